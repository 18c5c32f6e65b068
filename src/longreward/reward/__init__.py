"""The reward (LongReward §3.2): four judge dimensions, each in its own module with its prompts
beside it, and the scorer that runs them with shared per-document work. No file I/O here: the
resumable file stage is :mod:`longreward.stages.score`."""
