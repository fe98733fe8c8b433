//! From detected devices and configuration to the list of streams to run.
// OWNER: foundation helper.
