//! Shell completions and man pages for `herd` and `herd-agent`.
