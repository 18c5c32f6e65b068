"""Preference data (LongReward §3.3) as plain functions: sampling a prompt's answers, selecting
chosen/rejected, pair formats and mixing. The resumable file stages are in
:mod:`longreward.stages`."""
