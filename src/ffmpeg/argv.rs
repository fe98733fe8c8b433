//! ffmpeg argv builders. OWNER: ffmpeg helper.
