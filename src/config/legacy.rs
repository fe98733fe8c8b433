//! The legacy `/etc/mediamtx/audio-devices.conf`: shell assignments, parsed, never executed.
// OWNER: foundation helper.
