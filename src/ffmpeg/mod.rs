//! ffmpeg: the argv we run (SPEC §6) and the `-progress` stream it writes back.

pub mod argv;
pub mod progress;
