-- Replacements roll out in rings (issue 14): a fault whose replacement has not reached its
-- terminal's ring yet is decided `held`, and decided again whenever the replacement's rollout
-- moves. The rollout task looks for held faults every few seconds; this partial index keeps
-- that look to the held ones, which are few, however many faults are stored. The literal is
-- `herd_store::FAULT_HELD`.
CREATE INDEX faults_held ON faults (at) WHERE decision = 'held';
