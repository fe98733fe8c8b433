//! The ffmpeg argv we run (SPEC §6), built as data so it can be table-tested and
//! never passes through a shell. Proven against real ffmpeg 5.1 in tests/ffmpeg_real.rs;
//! docs/ffmpeg.md explains every flag.

use std::time::Duration;

use crate::cli::Filter;
use crate::config::params::Codec;

/// Where one input's audio comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A real capture device: `plughw:CARD=X,DEV=0`, `default`, a PCM name from asound.conf.
    Alsa { device: String },
    /// A lavfi source graph used verbatim (synthetic tone for demo/tests), paced with `-re`.
    Lavfi { graph: String },
}

impl Input {
    /// A sine tone with exactly `channels` channels at `sample_rate` Hz (any count 1–32;
    /// `aevalsrc` avoids channel-layout names, which ffmpeg 5.1 lacks for e.g. 10 channels).
    pub fn tone(freq_hz: u32, sample_rate: u32, channels: u32) -> Input {
        let one = format!("0.125*sin(2*PI*{freq_hz}*t)");
        let exprs = vec![one; channels.max(1) as usize].join("|");
        Input::Lavfi {
            graph: format!("aevalsrc=exprs={exprs}:s={sample_rate}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub input: Input,
    pub sample_rate: u32,
    pub channels: u32,
    pub thread_queue: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub codec: Codec,
    pub bitrate: String,
    pub url: String,
}

/// `silencedetect` settings; `None` where a builder takes `Option<&Silence>` turns it off.
#[derive(Debug, Clone, PartialEq)]
pub struct Silence {
    pub db: f64,
    pub duration: Duration,
}

/// What the argv adds beyond capture and publish: silence events, live levels, and a
/// local recording leg (tee muxer). `Extras::default()` adds nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extras {
    pub silence: Option<Silence>,
    /// Print peak/RMS once a second (astats) to stderr.
    pub levels: bool,
    /// The tee slave that writes segments (`recording::Plan::tee_leg`).
    pub record: Option<String>,
    /// Bound on each wait on the RTSP server (`-timeout`: connect, every handshake reply,
    /// every write); `None`: ffmpeg's default, which waits forever (docs/ffmpeg.md).
    pub rtsp_timeout: Option<Duration>,
}

/// The tee's slaves in order: the segment leg first, so at the end ffmpeg writes the last
/// segment's trailer before it waits for the RTSP leg's fifo (which a stalled server can
/// hold for minutes, and which only a second SIGINT cuts short: that one would also fail
/// every file write still to come). `progress::tee_leg_failed` maps these to our legs.
pub const TEE_SLAVE_SEGMENT: usize = 0;
pub const TEE_SLAVE_RTSP: usize = 1;

/// Packets the RTSP leg's fifo holds before it drops (about 2 s of opus, aac or mp3):
/// a server that stops reading costs the RTSP leg only, never capture or recording.
pub const RTSP_FIFO_PACKETS: u32 = 100;

impl Extras {
    pub fn silence(silence: Option<&Silence>) -> Extras {
        Extras {
            silence: silence.cloned(),
            ..Extras::default()
        }
    }
}

/// Sample rates libopus accepts; others get `-ar 48000` on the output.
const OPUS_RATES: [u32; 5] = [48000, 24000, 16000, 12000, 8000];

/// Arguments after the program name, SPEC §6 order.
pub fn individual(input: &InputSpec, out: &Output, silence: Option<&Silence>) -> Vec<String> {
    individual_with(input, out, &Extras::silence(silence))
}

/// `individual` with levels and recording as asked.
pub fn individual_with(input: &InputSpec, out: &Output, x: &Extras) -> Vec<String> {
    let mut a = head();
    push_input(&mut a, input);
    a.push("-af".into());
    a.push(filter_chain(x, input.sample_rate, out.codec));
    if x.record.is_some() {
        // The tee muxer has no default codecs, so ffmpeg picks no stream unless told.
        a.extend(["-map".into(), "0:a".into()]);
    }
    push_codec(&mut a, out, input.sample_rate, input.channels);
    push_outputs(&mut a, out, x);
    a
}

/// One input per device mixed by `amix` (stereo out) or `amerge` (channels add up).
/// An empty `inputs` yields an argv ffmpeg rejects; callers never start a mix without devices.
pub fn multiplex(
    inputs: &[InputSpec],
    filter: Filter,
    out: &Output,
    silence: Option<&Silence>,
) -> Vec<String> {
    multiplex_with(inputs, filter, out, &Extras::silence(silence))
}

/// `multiplex` with levels and recording as asked.
pub fn multiplex_with(
    inputs: &[InputSpec],
    filter: Filter,
    out: &Output,
    x: &Extras,
) -> Vec<String> {
    let mut a = head();
    for i in inputs {
        push_input(&mut a, i);
    }
    let k = inputs.len();
    let labels: String = (0..k).map(|n| format!("[{n}:a]")).collect();
    let mixer = match filter {
        Filter::Amix => format!("amix=inputs={k}:duration=longest"),
        Filter::Amerge => format!("amerge=inputs={k}"),
    };
    // The mix runs at the first input's rate unless the encoder needs another.
    let rate = inputs.first().map_or(48000, |i| i.sample_rate);
    a.push("-filter_complex".into());
    if x.record.is_some() {
        // The tee muxer has no default codecs: map the mix by label.
        a.push(format!(
            "{labels}{mixer},{}[msm_out]",
            filter_chain(x, rate, out.codec)
        ));
        a.extend(["-map".into(), "[msm_out]".into()]);
    } else {
        a.push(format!(
            "{labels}{mixer},{}",
            filter_chain(x, rate, out.codec)
        ));
    }
    let channels = match filter {
        Filter::Amix => 2,
        Filter::Amerge => inputs.iter().map(|i| i.channels).sum(),
    };
    if filter == Filter::Amix {
        // amix keeps the inputs' layout (mono mics give mono); SPEC promises stereo.
        a.extend(["-ac".into(), "2".into()]);
    }
    push_codec(&mut a, out, rate, channels);
    push_outputs(&mut a, out, x);
    a
}

/// Whether `codec` must be downmixed to stereo for `channels` to travel over RTSP.
/// ffmpeg 5.1's RTP muxer refuses multistream Opus ("Multistream opus not supported
/// in RTP"), and MP3 has at most two channels.
pub fn needs_downmix(codec: Codec, channels: u32) -> bool {
    matches!(codec, Codec::Opus | Codec::Mp3) && channels > 2
}

fn head() -> Vec<String> {
    [
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "warning",
        "-nostats",
        "-progress",
        "pipe:1",
    ]
    .map(String::from)
    .to_vec()
}

/// Input options stay before `-i`: ffmpeg 5.1 applies them to the next input only.
fn push_input(a: &mut Vec<String>, i: &InputSpec) {
    match &i.input {
        Input::Alsa { device } => {
            a.extend([
                "-f".into(),
                "alsa".into(),
                "-ar".into(),
                i.sample_rate.to_string(),
                "-ac".into(),
                i.channels.to_string(),
                "-thread_queue_size".into(),
                i.thread_queue.to_string(),
                "-i".into(),
                device.clone(),
            ]);
        }
        Input::Lavfi { graph } => {
            a.extend([
                "-re".into(),
                "-f".into(),
                "lavfi".into(),
                "-thread_queue_size".into(),
                i.thread_queue.to_string(),
                "-i".into(),
                graph.clone(),
            ]);
        }
    }
}

/// `aresample` keeps timestamps continuous over ALSA hiccups; `silencedetect` marks
/// silence as frame metadata and `ametadata` prints it to stderr (fd 2) directly, so
/// the events appear while `-loglevel warning` keeps the log quiet (silencedetect's own
/// lines are info level).
///
/// Levels: a side branch cuts the captured audio into one-second frames (`asetnsamples`),
/// `astats` measures each (reset every frame) and `ametadata` prints peak and RMS to
/// stderr, where the reader takes them out of the log. It splits off before `aresample`,
/// so it measures what the device delivered, not silence aresample pads in for a slow
/// clock, and before silencedetect, so its prints never repeat silence keys.
///
/// PCM with recording: the pcm encoder takes frames as they come, and after `aresample`
/// that can be one sample per packet; the RTSP leg's fifo counts packets, so PCM is cut
/// into 20 ms packets (`asetnsamples`) like the other codecs' frames.
fn filter_chain(x: &Extras, rate: u32, codec: Codec) -> String {
    let mut f = String::new();
    if x.levels {
        f.push_str(&format!(
            "asplit[msm_a][msm_l];[msm_l]asetnsamples=n={}:p=0,\
             astats=metadata=1:reset=1:measure_perchannel=none:\
             measure_overall=Peak_level+RMS_level,\
             ametadata=mode=print:file=pipe\\\\:2:direct=1,anullsink;[msm_a]",
            rate.max(1)
        ));
    }
    f.push_str("aresample=async=1:first_pts=0");
    if let Some(s) = &x.silence {
        f.push_str(&format!(
            ",silencedetect=noise={}dB:d={},ametadata=mode=print:file=pipe\\\\:2:direct=1",
            s.db,
            s.duration.as_secs_f64()
        ));
    }
    if x.record.is_some() && codec == Codec::Pcm {
        f.push_str(&format!(",asetnsamples=n={}:p=0", (rate / 50).max(1)));
    }
    f
}

fn push_codec(a: &mut Vec<String>, out: &Output, rate: u32, channels: u32) {
    let b = out.bitrate.clone();
    match out.codec {
        Codec::Opus => {
            a.extend([
                "-c:a".into(),
                "libopus".into(),
                "-b:a".into(),
                b,
                "-application".into(),
                "audio".into(),
            ]);
            if !OPUS_RATES.contains(&rate) {
                a.extend(["-ar".into(), "48000".into()]);
            }
        }
        Codec::Aac => a.extend(["-c:a".into(), "aac".into(), "-b:a".into(), b]),
        Codec::Mp3 => a.extend(["-c:a".into(), "libmp3lame".into(), "-b:a".into(), b]),
        Codec::Pcm => a.extend(["-c:a".into(), "pcm_s16be".into()]),
    }
    if needs_downmix(out.codec, channels) {
        a.extend(["-ac".into(), "2".into()]);
    }
}

/// Plain RTSP, or with recording the tee muxer: the segment leg, then the RTSP leg behind a
/// fifo (its own
/// thread: the handshake and every write happen there, packets are dropped when it falls
/// behind) with `onfail=ignore` (a dead server ends publishing, not capture; ffmpeg 5.1
/// keeps running and writing progress), and the segment leg.
fn push_outputs(a: &mut Vec<String>, out: &Output, x: &Extras) {
    match &x.record {
        None => push_rtsp(a, out, x.rtsp_timeout),
        Some(leg) => {
            let timeout = x
                .rtsp_timeout
                .map(|t| format!("timeout={}:", timeout_us(t)))
                .unwrap_or_default();
            a.extend([
                "-f".into(),
                "tee".into(),
                format!(
                    "{leg}|[f=rtsp:rtsp_transport=tcp:{timeout}onfail=ignore:use_fifo=1:\
                     fifo_options=drop_pkts_on_overflow=1\\\\:queue_size={RTSP_FIFO_PACKETS}]{}",
                    out.url.replace('\\', "\\\\").replace('|', "\\|")
                ),
            ])
        }
    }
}

/// ffmpeg's `-timeout` is in microseconds; 0 would mean "wait forever".
fn timeout_us(t: Duration) -> u128 {
    t.as_micros().max(1000)
}

fn push_rtsp(a: &mut Vec<String>, out: &Output, timeout: Option<Duration>) {
    a.extend([
        "-f".into(),
        "rtsp".into(),
        "-rtsp_transport".into(),
        "tcp".into(),
    ]);
    if let Some(t) = timeout {
        a.extend(["-timeout".into(), timeout_us(t).to_string()]);
    }
    a.push(out.url.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alsa(dev: &str, rate: u32, ch: u32) -> InputSpec {
        InputSpec {
            input: Input::Alsa { device: dev.into() },
            sample_rate: rate,
            channels: ch,
            thread_queue: 8192,
        }
    }

    fn out(codec: Codec) -> Output {
        Output {
            codec,
            bitrate: "128k".into(),
            url: "rtsp://127.0.0.1:8554/mic".into(),
        }
    }

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    const HEAD: &str = "-nostdin -hide_banner -loglevel warning -nostats -progress pipe:1";
    const TAIL: &str = "-f rtsp -rtsp_transport tcp rtsp://127.0.0.1:8554/mic";

    #[test]
    fn individual_per_codec_and_rate() {
        let table: &[(Codec, u32, u32, &str)] = &[
            (
                Codec::Opus,
                48000,
                2,
                "-c:a libopus -b:a 128k -application audio",
            ),
            (
                Codec::Opus,
                16000,
                1,
                "-c:a libopus -b:a 128k -application audio",
            ),
            (
                Codec::Opus,
                44100,
                2,
                "-c:a libopus -b:a 128k -application audio -ar 48000",
            ),
            (
                Codec::Opus,
                96000,
                4,
                "-c:a libopus -b:a 128k -application audio -ar 48000 -ac 2",
            ),
            (Codec::Aac, 44100, 2, "-c:a aac -b:a 128k"),
            (Codec::Aac, 48000, 6, "-c:a aac -b:a 128k"),
            (Codec::Mp3, 48000, 2, "-c:a libmp3lame -b:a 128k"),
            (Codec::Mp3, 48000, 3, "-c:a libmp3lame -b:a 128k -ac 2"),
            (Codec::Pcm, 44100, 1, "-c:a pcm_s16be"),
            (Codec::Pcm, 48000, 6, "-c:a pcm_s16be"),
        ];
        for (codec, rate, ch, codec_args) in table {
            let got = individual(
                &alsa("plughw:CARD=Mic,DEV=0", *rate, *ch),
                &out(*codec),
                None,
            );
            let want = words(&format!(
                "{HEAD} -f alsa -ar {rate} -ac {ch} -thread_queue_size 8192 \
                 -i plughw:CARD=Mic,DEV=0 -af aresample=async=1:first_pts=0 {codec_args} {TAIL}"
            ));
            assert_eq!(got, want, "{codec} {rate} {ch}");
        }
    }

    #[test]
    fn silence_goes_into_the_filter_chain() {
        let s = Silence {
            db: -50.0,
            duration: Duration::from_millis(1500),
        };
        let got = individual(&alsa("default", 48000, 2), &out(Codec::Aac), Some(&s));
        let i = got.iter().position(|a| a == "-af").unwrap();
        assert_eq!(
            got[i + 1],
            "aresample=async=1:first_pts=0,silencedetect=noise=-50dB:d=1.5,\
             ametadata=mode=print:file=pipe\\\\:2:direct=1"
        );
        let s = Silence {
            db: -60.5,
            duration: Duration::from_secs(60),
        };
        assert!(
            individual(&alsa("default", 48000, 2), &out(Codec::Aac), Some(&s))[i + 1]
                .contains("silencedetect=noise=-60.5dB:d=60,")
        );
    }

    #[test]
    fn lavfi_input_is_paced_and_keeps_input_options_before_i() {
        let spec = InputSpec {
            input: Input::tone(440, 44100, 2),
            sample_rate: 44100,
            channels: 2,
            thread_queue: 512,
        };
        let got = individual(&spec, &out(Codec::Opus), None);
        let want = words(&format!(
            "{HEAD} -re -f lavfi -thread_queue_size 512 \
             -i aevalsrc=exprs=0.125*sin(2*PI*440*t)|0.125*sin(2*PI*440*t):s=44100 \
             -af aresample=async=1:first_pts=0 -c:a libopus -b:a 128k -application audio \
             -ar 48000 {TAIL}"
        ));
        assert_eq!(got, want);
        assert_eq!(
            Input::tone(1000, 8000, 1),
            Input::Lavfi {
                graph: "aevalsrc=exprs=0.125*sin(2*PI*1000*t):s=8000".into()
            }
        );
    }

    #[test]
    fn multiplex_amix_and_amerge() {
        let ins = [
            alsa("a", 48000, 2),
            alsa("b", 48000, 1),
            alsa("c", 48000, 2),
        ];
        let inputs = "-f alsa -ar 48000 -ac 2 -thread_queue_size 8192 -i a \
                      -f alsa -ar 48000 -ac 1 -thread_queue_size 8192 -i b \
                      -f alsa -ar 48000 -ac 2 -thread_queue_size 8192 -i c";
        let table: &[(Filter, Codec, &str)] = &[
            (
                Filter::Amix,
                Codec::Opus,
                "[0:a][1:a][2:a]amix=inputs=3:duration=longest,aresample=async=1:first_pts=0 \
                 -ac 2 -c:a libopus -b:a 128k -application audio",
            ),
            (
                Filter::Amerge,
                Codec::Opus,
                "[0:a][1:a][2:a]amerge=inputs=3,aresample=async=1:first_pts=0 \
                 -c:a libopus -b:a 128k -application audio -ac 2",
            ),
            (
                Filter::Amerge,
                Codec::Aac,
                "[0:a][1:a][2:a]amerge=inputs=3,aresample=async=1:first_pts=0 -c:a aac -b:a 128k",
            ),
            (
                Filter::Amerge,
                Codec::Pcm,
                "[0:a][1:a][2:a]amerge=inputs=3,aresample=async=1:first_pts=0 -c:a pcm_s16be",
            ),
        ];
        for (filter, codec, rest) in table {
            let got = multiplex(&ins, *filter, &out(*codec), None);
            let want = words(&format!("{HEAD} {inputs} -filter_complex {rest} {TAIL}"));
            assert_eq!(got, want, "{filter:?} {codec}");
        }
    }

    #[test]
    fn multiplex_single_input_and_odd_rate() {
        let got = multiplex(
            &[alsa("a", 44100, 1)],
            Filter::Amerge,
            &out(Codec::Opus),
            None,
        );
        let want = words(&format!(
            "{HEAD} -f alsa -ar 44100 -ac 1 -thread_queue_size 8192 -i a \
             -filter_complex [0:a]amerge=inputs=1,aresample=async=1:first_pts=0 \
             -c:a libopus -b:a 128k -application audio -ar 48000 {TAIL}"
        ));
        assert_eq!(got, want);
    }

    #[test]
    fn downmix_rule() {
        let table = [
            (Codec::Opus, 2, false),
            (Codec::Opus, 3, true),
            (Codec::Mp3, 6, true),
            (Codec::Mp3, 1, false),
            (Codec::Aac, 6, false),
            (Codec::Pcm, 32, false),
        ];
        for (c, n, want) in table {
            assert_eq!(needs_downmix(c, n), want, "{c} {n}");
        }
    }

    #[test]
    fn levels_and_recording_extras() {
        let x = Extras {
            silence: None,
            levels: true,
            record: Some("[f=segment]/r/mic-%Y.ogg".into()),
            rtsp_timeout: Some(Duration::from_millis(2500)),
        };
        let got = individual_with(&alsa("default", 44100, 2), &out(Codec::Opus), &x);
        let want = words(&format!(
            "{HEAD} -f alsa -ar 44100 -ac 2 -thread_queue_size 8192 -i default -af \
             asplit[msm_a][msm_l];[msm_l]asetnsamples=n=44100:p=0,astats=metadata=1:reset=1:\
             measure_perchannel=none:measure_overall=Peak_level+RMS_level,\
             ametadata=mode=print:file=pipe\\\\:2:direct=1,anullsink;[msm_a]\
             aresample=async=1:first_pts=0 -map 0:a -c:a libopus -b:a 128k -application audio \
             -ar 48000 -f tee [f=segment]/r/mic-%Y.ogg|\
             [f=rtsp:rtsp_transport=tcp:timeout=2500000:onfail=ignore:use_fifo=1:\
             fifo_options=drop_pkts_on_overflow=1\\\\:queue_size=100]rtsp://127.0.0.1:8554/mic"
        ));
        assert_eq!(got, want);
        // PCM through the fifo comes in 20 ms packets.
        let pcm = individual_with(&alsa("d", 44100, 2), &out(Codec::Pcm), &x);
        let i = pcm.iter().position(|a| a == "-af").unwrap();
        assert!(
            pcm[i + 1].ends_with(",asetnsamples=n=882:p=0"),
            "{}",
            pcm[i + 1]
        );
        // Publishing alone: the RTSP muxer's own socket timeout.
        let plain = individual_with(
            &alsa("d", 48000, 2),
            &out(Codec::Aac),
            &Extras {
                rtsp_timeout: Some(Duration::from_secs(5)),
                ..Extras::default()
            },
        );
        assert_eq!(
            plain[plain.len() - 7..],
            words("-f rtsp -rtsp_transport tcp -timeout 5000000 rtsp://127.0.0.1:8554/mic")
        );
        let m = multiplex_with(
            &[alsa("a", 48000, 1), alsa("b", 48000, 1)],
            Filter::Amix,
            &out(Codec::Aac),
            &Extras {
                record: Some("[f=segment]x".into()),
                ..Extras::default()
            },
        );
        let i = m.iter().position(|a| a == "-filter_complex").unwrap();
        assert_eq!(
            m[i + 1],
            "[0:a][1:a]amix=inputs=2:duration=longest,aresample=async=1:first_pts=0[msm_out]"
        );
        assert_eq!(m[i + 2..i + 4], ["-map", "[msm_out]"]);
        // Without extras the argv is exactly the plain one.
        assert_eq!(
            individual_with(&alsa("d", 48000, 2), &out(Codec::Aac), &Extras::default()),
            individual(&alsa("d", 48000, 2), &out(Codec::Aac), None)
        );
    }
}
