//! `-progress pipe:1` parsing. OWNER: ffmpeg helper.
