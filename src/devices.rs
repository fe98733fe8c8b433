//! Discovery of USB capture devices from /proc/asound and /dev/snd (SPEC §4).
// OWNER: foundation helper.
