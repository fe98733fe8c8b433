//! Lookup of each device parameter with provenance (SPEC §5).
// OWNER: foundation helper.
