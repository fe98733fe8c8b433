//! Thin entry point: parse flags, run, map the result to an exit code.

fn main() -> std::process::ExitCode {
    mediamtx_stream_manager::main_entry()
}
