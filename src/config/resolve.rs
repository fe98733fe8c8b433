//! Lookup of each device parameter with provenance (SPEC §5). First hit wins:
//! TOML `[devices."<stream name>"]` → friendly key (`<KEY>` of the stream name) → full key
//! (`<KEY>` of the by-id name) → `DEFAULT_<PARAM>` → TOML `[defaults]` → built-in.
//! An empty value anywhere falls through to the next source.

use crate::config::legacy::DeviceFile;
use crate::config::params::{self, Params, PartialParams, Source, Sourced};
use crate::config::{DeviceOverride, Settings};
use crate::exit::Error;
use crate::naming::device_key;

/// The resolved parameters of one stream named `stream`.
pub fn params(
    settings: &Settings,
    file: Option<&DeviceFile>,
    stream: &str,
    by_id: Option<&str>,
) -> Result<Params, Error> {
    Lookup::new(settings, file, &[stream], by_id).params()
}

/// Where to look for one device. `names` lists the stream names the device answers to, most
/// specific first (e.g. the final name, then the automatic one), so renaming a stream does
/// not orphan settings written under its automatic name.
pub struct Lookup<'a> {
    settings: &'a Settings,
    file: Option<&'a DeviceFile>,
    tables: Vec<&'a DeviceOverride>,
    /// Friendly keys then the full key, with the source each one reports.
    keys: Vec<(String, Source)>,
}

impl<'a> Lookup<'a> {
    pub fn new(
        settings: &'a Settings,
        file: Option<&'a DeviceFile>,
        names: &[&str],
        by_id: Option<&str>,
    ) -> Self {
        let mut tables: Vec<&DeviceOverride> = Vec::new();
        let mut keys: Vec<(String, Source)> = Vec::new();
        for name in names {
            if let Some(t) = settings.device(name) {
                if !tables.iter().any(|x| std::ptr::eq(*x, t)) {
                    tables.push(t);
                }
            }
            push_key(&mut keys, device_key(name), Source::Friendly);
        }
        if let Some(b) = by_id {
            push_key(&mut keys, device_key(b), Source::Full);
        }
        Lookup {
            settings,
            file,
            tables,
            keys,
        }
    }

    /// Every audio parameter with where it came from.
    pub fn params(&self) -> Result<Params, Error> {
        let d = &self.settings.defaults;
        Ok(Params {
            sample_rate: self.one(
                "SAMPLE_RATE",
                |p| p.sample_rate,
                d.sample_rate,
                params::parse_sample_rate,
                params::BUILTIN_SAMPLE_RATE,
            )?,
            channels: self.one(
                "CHANNELS",
                |p| p.channels,
                d.channels,
                params::parse_channels,
                params::BUILTIN_CHANNELS,
            )?,
            bitrate: self.one(
                "BITRATE",
                |p| p.bitrate.clone(),
                d.bitrate.clone(),
                params::parse_bitrate,
                params::BUILTIN_BITRATE.to_string(),
            )?,
            codec: self.one(
                "CODEC",
                |p| p.codec,
                d.codec,
                params::parse_codec,
                params::BUILTIN_CODEC,
            )?,
            thread_queue: self.one(
                "THREAD_QUEUE",
                |p| p.thread_queue,
                d.thread_queue,
                params::parse_thread_queue,
                params::BUILTIN_THREAD_QUEUE,
            )?,
        })
    }

    /// An explicit stream name (TOML `stream`, `DEVICE_<KEY>_STREAM_NAME`), not yet sanitised.
    pub fn stream_name(&self) -> Option<Sourced<String>> {
        if let Some(s) = self.tables.iter().find_map(|t| t.stream.clone()) {
            return Some(Sourced {
                value: s,
                source: Source::TomlDevice,
            });
        }
        self.device_value("STREAM_NAME")
            .map(|(value, source, _, _)| Sourced { value, source })
    }

    /// A configured ALSA address (TOML `alsa_device`, `DEVICE_<KEY>_ALSA_DEVICE`).
    pub fn alsa_device(&self) -> Option<Sourced<String>> {
        if let Some(s) = self.tables.iter().find_map(|t| t.alsa_device.clone()) {
            return Some(Sourced {
                value: s,
                source: Source::TomlDevice,
            });
        }
        self.device_value("ALSA_DEVICE")
            .map(|(value, source, _, _)| Sourced { value, source })
    }

    /// Whether the stream runs (TOML `enabled`, `DEVICE_<KEY>_ENABLED`, `DEFAULT_ENABLED`).
    pub fn enabled(&self) -> Result<Sourced<bool>, Error> {
        if let Some(b) = self.tables.iter().find_map(|t| t.enabled) {
            return Ok(Sourced {
                value: b,
                source: Source::TomlDevice,
            });
        }
        match self.file_value("ENABLED", true) {
            Some((v, source, key, line)) => Ok(Sourced {
                value: params::parse_bool(&v).map_err(|e| self.bad(&key, line, &e))?,
                source,
            }),
            None => Ok(Sourced {
                value: true,
                source: Source::BuiltIn,
            }),
        }
    }

    /// One audio parameter through all six sources.
    fn one<T>(
        &self,
        param: &str,
        toml_device: impl Fn(&PartialParams) -> Option<T>,
        toml_default: Option<T>,
        parse: fn(&str) -> Result<T, String>,
        builtin: T,
    ) -> Result<Sourced<T>, Error> {
        if let Some(v) = self.tables.iter().find_map(|t| toml_device(&t.params)) {
            return Ok(Sourced {
                value: v,
                source: Source::TomlDevice,
            });
        }
        if let Some((v, source, key, line)) = self.file_value(param, true) {
            let value = parse(&v).map_err(|e| self.bad(&key, line, &e))?;
            return Ok(Sourced { value, source });
        }
        Ok(match toml_default {
            Some(value) => Sourced {
                value,
                source: Source::TomlDefault,
            },
            None => Sourced {
                value: builtin,
                source: Source::BuiltIn,
            },
        })
    }

    /// `DEVICE_<KEY>_<PARAM>` for the friendly then full keys, skipping empty values.
    fn device_value(&self, param: &str) -> Option<(String, Source, String, usize)> {
        self.file_value(param, false)
    }

    /// As `device_value`, then `DEFAULT_<PARAM>` when `with_default`.
    fn file_value(
        &self,
        param: &str,
        with_default: bool,
    ) -> Option<(String, Source, String, usize)> {
        let file = self.file?;
        let mut candidates: Vec<(String, Source)> = self
            .keys
            .iter()
            .map(|(k, s)| (format!("DEVICE_{k}_{param}"), *s))
            .collect();
        if with_default {
            candidates.push((format!("DEFAULT_{param}"), Source::FileDefault));
        }
        candidates.into_iter().find_map(|(key, source)| {
            let (v, line) = file.get(&key)?;
            let v = v.trim();
            (!v.is_empty()).then(|| (v.to_string(), source, key, line))
        })
    }

    fn bad(&self, key: &str, line: usize, why: &str) -> Error {
        let path = self.file.map(|f| f.path.display().to_string());
        let key = params::cut(key);
        Error::config(format!("{}:{line}: {key}: {why}", path.unwrap_or_default()))
    }
}

fn push_key(keys: &mut Vec<(String, Source)>, key: String, source: Source) {
    if !key.is_empty() && !keys.iter().any(|(k, _)| *k == key) {
        keys.push((key, source));
    }
}

/// Built-in values only (what a stream gets with no configuration at all).
pub fn builtin_params() -> Params {
    Params {
        sample_rate: Sourced {
            value: params::BUILTIN_SAMPLE_RATE,
            source: Source::BuiltIn,
        },
        channels: Sourced {
            value: params::BUILTIN_CHANNELS,
            source: Source::BuiltIn,
        },
        bitrate: Sourced {
            value: params::BUILTIN_BITRATE.to_string(),
            source: Source::BuiltIn,
        },
        codec: Sourced {
            value: params::BUILTIN_CODEC,
            source: Source::BuiltIn,
        },
        thread_queue: Sourced {
            value: params::BUILTIN_THREAD_QUEUE,
            source: Source::BuiltIn,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::params::Codec;
    use std::path::Path;

    const BY_ID: &str = "usb-Blue_Microphones_Yeti-00";
    const STREAM: &str = "yeti";

    fn settings(toml: &str) -> Settings {
        Settings::from_toml(Path::new("m.toml"), toml).unwrap()
    }

    fn file(text: &str) -> DeviceFile {
        DeviceFile::parse(Path::new("d.conf"), text).unwrap()
    }

    /// Each row adds one more source; the highest one present must win the sample rate.
    #[test]
    fn each_source_wins_in_order() {
        let toml_dev = "[devices.yeti]\nsample_rate = 8000\n";
        let toml_def = "[defaults]\nsample_rate = 16000\n";
        let friendly = "DEVICE_YETI_SAMPLE_RATE=22050\n";
        let full = "DEVICE_USB_BLUE_MICROPHONES_YETI_00_SAMPLE_RATE=24000\n";
        let file_def = "DEFAULT_SAMPLE_RATE=32000\n";
        let table: &[(&str, &str, u32, Source)] = &[
            ("", "", 48000, Source::BuiltIn),
            (toml_def, "", 16000, Source::TomlDefault),
            (toml_def, file_def, 32000, Source::FileDefault),
            (toml_def, &[file_def, full].concat(), 24000, Source::Full),
            (
                toml_def,
                &[file_def, full, friendly].concat(),
                22050,
                Source::Friendly,
            ),
            (
                &[toml_def, toml_dev].concat(),
                &[file_def, full, friendly].concat(),
                8000,
                Source::TomlDevice,
            ),
        ];
        for (toml, legacy, want, source) in table {
            let s = settings(toml);
            let f = file(legacy);
            let p = params(&s, Some(&f), STREAM, Some(BY_ID)).unwrap();
            assert_eq!(p.sample_rate.value, *want, "{toml} / {legacy}");
            assert_eq!(p.sample_rate.source, *source, "{toml} / {legacy}");
        }
    }

    #[test]
    fn empty_values_fall_through() {
        let s = settings("[devices.yeti]\ncodec = \"\"\n[defaults]\ncodec = \"mp3\"\n");
        let f = file("DEVICE_YETI_CODEC=\nDEVICE_USB_BLUE_MICROPHONES_YETI_00_CODEC=''\nDEFAULT_CODEC=\"\"\n");
        let p = params(&s, Some(&f), STREAM, Some(BY_ID)).unwrap();
        assert_eq!(p.codec.value, Codec::Mp3);
        assert_eq!(p.codec.source, Source::TomlDefault);
    }

    #[test]
    fn each_param_resolves_independently() {
        let s = settings("[devices.yeti]\nbitrate = \"64k\"\n");
        let f = file("DEVICE_YETI_CHANNELS=1\nDEFAULT_CODEC=aac\n");
        let p = params(&s, Some(&f), STREAM, None).unwrap();
        assert_eq!(p.bitrate.value, "64k");
        assert_eq!(p.bitrate.source, Source::TomlDevice);
        assert_eq!((p.channels.value, p.channels.source), (1, Source::Friendly));
        assert_eq!(
            (p.codec.value, p.codec.source),
            (Codec::Aac, Source::FileDefault)
        );
        assert_eq!(p.thread_queue.value, 8192);
        assert_eq!(p.thread_queue.source, Source::BuiltIn);
        assert_eq!(params(&s, None, "other", None).unwrap(), builtin_params());
    }

    #[test]
    fn names_alsa_and_enabled() {
        let s = settings("[devices.auto]\nstream = \"Garden Mic\"\n");
        let f = file(
            "DEVICE_GARDEN_ALSA_DEVICE=dsnoop0\nDEVICE_USB_X_ENABLED=no\nDEVICE_USB_X_STREAM_NAME=ignored\n",
        );
        let l = Lookup::new(&s, Some(&f), &["auto"], Some("usb-x"));
        let n = l.stream_name().unwrap();
        assert_eq!(
            (n.value.as_str(), n.source),
            ("Garden Mic", Source::TomlDevice)
        );
        let l = Lookup::new(&s, Some(&f), &["garden", "auto"], Some("usb-x"));
        let a = l.alsa_device().unwrap();
        assert_eq!((a.value.as_str(), a.source), ("dsnoop0", Source::Friendly));
        let e = l.enabled().unwrap();
        assert_eq!((e.value, e.source), (false, Source::Full));
        let l = Lookup::new(&s, Some(&f), &["other"], Some("usb-x"));
        let n = l.stream_name().unwrap();
        assert_eq!((n.value.as_str(), n.source), ("ignored", Source::Full));
        let l = Lookup::new(&s, None, &["other"], None);
        assert!(l.stream_name().is_none() && l.alsa_device().is_none());
        assert_eq!(l.enabled().unwrap().source, Source::BuiltIn);
        let f = file("DEFAULT_ENABLED=false\n");
        let l = Lookup::new(&s, Some(&f), &["other"], None);
        let e = l.enabled().unwrap();
        assert_eq!((e.value, e.source), (false, Source::FileDefault));
    }
}
