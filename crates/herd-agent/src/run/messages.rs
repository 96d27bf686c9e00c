//! Messages from operators (seed 001 ¶0044): each check-in says the last message id the agent
//! has and its answer carries the newer ones (from an older upstream the agent reads its inbox,
//! `/v1/terminal/messages`, apart), through the terminal's site too; the agent keeps the latest in
//! `<state>/messages.json`, and tells the user — a notice on its output and a desktop
//! notification through `notify-send` where the system has one. `herd-agent messages` shows
//! them; `herd-agent message TEXT` sends the user's answer or status through the outbox (a
//! `message.sent` event), so it leaves even while the center is unreachable.

use std::path::PathBuf;

use anyhow::{Result, bail};
use herd_client::Client;
use herd_proto::api::events;
use herd_proto::messages::{MAX_MESSAGE_CHARS, Message, MessageAnswer};
use serde::{Deserialize, Serialize};

use super::state::{self, StatePaths};
use crate::outbox::Outbox;

/// Messages kept in `messages.json` (older ones are dropped).
const KEPT: usize = 50;
const MESSAGES_FILE: &str = "messages.json";

/// `messages.json`: the last id read and the latest messages.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct MessagesFile {
    pub last_id: u64,
    pub messages: Vec<Message>,
}

fn path(paths: &StatePaths) -> PathBuf {
    paths.root.join(MESSAGES_FILE)
}

/// The messages kept (none before the first).
pub(crate) fn load(paths: &StatePaths) -> Result<MessagesFile> {
    Ok(state::load_json(&path(paths))?.unwrap_or_default())
}

/// Reads the messages after the last one kept, keeps them, and returns them: for an upstream
/// whose check-in answers do not carry them. An older site answers 421 (`wrong_role`) and an
/// older center 404: nothing new.
pub(crate) fn receive(client: &Client, paths: &StatePaths) -> Result<Vec<Message>> {
    let mut file = load(paths)?;
    let new = match client.terminal_messages(file.last_id) {
        Ok(list) => list.messages,
        Err(err) if matches!(err.status(), Some(404 | 421)) => return Ok(Vec::new()),
        Err(err) => return Err(err.into()),
    };
    if new.is_empty() {
        return Ok(new);
    }
    file.last_id = new.iter().map(|m| m.id).max().unwrap_or(file.last_id);
    file.messages.extend(new.iter().cloned());
    let drop = file.messages.len().saturating_sub(KEPT);
    file.messages.drain(..drop);
    state::save_json(&path(paths), &file)?;
    Ok(new)
}

/// Keeps the messages a check-in answer carried; `through` is the id the center says the
/// terminal has everything up to. Returns those not kept before.
pub(crate) fn keep(paths: &StatePaths, carried: &[Message], through: u64) -> Result<Vec<Message>> {
    let mut file = load(paths)?;
    let new: Vec<Message> = carried
        .iter()
        .filter(|m| m.id > file.last_id)
        .cloned()
        .collect();
    let last_id = new
        .iter()
        .map(|m| m.id)
        .chain([through, file.last_id])
        .max()
        .unwrap_or(file.last_id);
    if new.is_empty() && last_id == file.last_id {
        return Ok(new);
    }
    file.last_id = last_id;
    file.messages.extend(new.iter().cloned());
    let drop = file.messages.len().saturating_sub(KEPT);
    file.messages.drain(..drop);
    state::save_json(&path(paths), &file)?;
    Ok(new)
}

/// Tells the user: a notice on stderr, and a desktop notification where `notify-send` is.
pub(crate) fn notify(messages: &[Message]) {
    for message in messages {
        let text = super::agent::printable(&message.text);
        eprintln!(
            "herd-agent: message {} from the operators ({}): {text}",
            message.id, message.at
        );
        // Absent on servers and phones: then the notice above is all.
        let _ = std::process::Command::new("notify-send")
            .args(["--app-name=herd-agent", "Message from the operators", &text])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[derive(Debug, clap::Args)]
pub struct MessagesArgs {
    /// The agent's state directory (as given to `herd-agent run`).
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct MessageArgs {
    /// The agent's state directory (as given to `herd-agent run`).
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// The message this answers (its id, as `herd-agent messages` shows).
    #[arg(long, value_name = "ID")]
    reply_to: Option<u64>,
    /// Your answer or status, for the operators.
    text: String,
}

fn enrolled(state_dir: &std::path::Path) -> Result<StatePaths> {
    let paths = StatePaths::new(state_dir);
    if !paths.agent().exists() {
        bail!(
            "{} is not the state directory of an enrolled agent (it has no agent.json)",
            state_dir.display()
        );
    }
    Ok(paths)
}

/// `herd-agent messages`: the messages received, oldest first.
pub fn run_messages(args: &MessagesArgs) -> Result<u8> {
    let paths = enrolled(&args.state_dir)?;
    let file = load(&paths)?;
    if file.messages.is_empty() {
        println!("no messages from the operators");
    }
    for message in &file.messages {
        println!(
            "{} {} {}",
            message.id,
            message.at,
            super::agent::printable(&message.text)
        );
    }
    Ok(0)
}

/// `herd-agent message TEXT`: queues the user's message for the center.
pub fn run_message(args: &MessageArgs) -> Result<u8> {
    let chars = args.text.chars().count();
    if args.text.trim().is_empty() || chars > MAX_MESSAGE_CHARS {
        bail!("a message has 1 to {MAX_MESSAGE_CHARS} characters, not {chars}");
    }
    let paths = enrolled(&args.state_dir)?;
    let outbox = Outbox::open(&paths.outbox())?;
    let answer = MessageAnswer {
        text: args.text.clone(),
        reply_to: args.reply_to,
    };
    let seq = outbox.push(events::MESSAGE_SENT, serde_json::to_value(&answer)?)?;
    println!(
        "herd-agent: message queued (outbox event {seq}); it is sent at the agent's next check-in"
    );
    Ok(0)
}
