//! Messages against a real `herd serve`: operators send to all, a group, one terminal
//! (`herd messages send`); each terminal's inbox holds what is for it; a user's answer travels
//! as a `message.sent` event and lands in the terminal's thread; `herd-agent message` queues
//! it in a real agent's outbox and `herd-agent messages` shows what the agent received; bad
//! input is refused on every path.

mod support;

use std::process::Output;

use herd_proto::api::{EventBatch, EventDoc};
use support::{TestCenter, code, enrol, enrolment_token};

fn herd(center: &TestCenter, args: &[&str]) -> Output {
    support::herd_as_operator(center, args)
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn refused(output: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(expected), "{expected}: {stderr}");
}

fn event(seq: u64, kind: &str, data: serde_json::Value) -> EventBatch {
    EventBatch {
        events: vec![EventDoc {
            seq,
            at: "2026-12-06T09:00:00Z".into(),
            kind: kind.into(),
            data,
        }],
    }
}

#[test]
fn messages_reach_their_audience_and_answers_come_back() {
    let center = TestCenter::start();
    let token = enrolment_token(&center, 2);
    let pc = center.terminal_client(&enrol(&center, &token, "pc-7", "user-a", "pc"));
    let phone = center.terminal_client(&enrol(&center, &token, "phone-1", "user-b", "phone"));

    ok(&herd(
        &center,
        &["messages", "send", "--all", "Maintenance at 22:00"],
    ));
    ok(&herd(
        &center,
        &["messages", "send", "--group", "unknown", "Please place me"],
    ));
    let out = ok(&herd(
        &center,
        &[
            "messages",
            "send",
            "--terminal",
            "pc-7",
            "Call the help desk",
        ],
    ));
    assert!(out.starts_with("message 3 sent"), "{out}");

    let texts = |list: herd_proto::messages::MessageList| -> Vec<String> {
        list.messages.into_iter().map(|m| m.text).collect()
    };
    assert_eq!(
        texts(pc.terminal_messages(0).unwrap()),
        [
            "Maintenance at 22:00",
            "Please place me",
            "Call the help desk"
        ]
    );
    assert_eq!(
        texts(phone.terminal_messages(0).unwrap()),
        ["Maintenance at 22:00", "Please place me"]
    );
    assert_eq!(
        texts(pc.terminal_messages(2).unwrap()),
        ["Call the help desk"]
    );

    // The user's answer, through the events endpoint the outbox uses.
    pc.send_events(&event(
        1,
        "message.sent",
        serde_json::json!({"text": "Called, thanks", "reply_to": 3}),
    ))
    .unwrap();
    let thread = ok(&herd(&center, &["messages", "list", "--terminal", "pc-7"]));
    assert!(thread.contains("Call the help desk"), "{thread}");
    assert!(
        thread.contains("terminal:pc-7") && thread.contains("Called, thanks"),
        "{thread}"
    );
    assert!(!thread.contains("Maintenance"), "{thread}");

    // Bad input, each refused with nothing stored.
    refused(
        &herd(&center, &["messages", "send", "--group", "nosuch", "hi"]),
        "no group \"nosuch\"",
    );
    refused(
        &herd(&center, &["messages", "send", "--terminal", "ghost", "hi"]),
        "no terminal \"ghost\"",
    );
    refused(
        &herd(&center, &["messages", "send", "--all", "   "]),
        "1 to 4096 characters",
    );
    refused(
        &herd(&center, &["messages", "send", "--all", &"x".repeat(4097)]),
        "not 4097",
    );
    refused(
        &herd(&center, &["messages", "list", "--limit", "0"]),
        "limit: 0",
    );
    let usage = herd(&center, &["messages", "send", "hi"]);
    assert_eq!(usage.status.code(), Some(2));
    for (data, expected) in [
        (
            serde_json::json!({"text": ""}),
            "$.events[0].data: text: a message has",
        ),
        (serde_json::json!({"words": "x"}), "not a message answer"),
    ] {
        let err = pc.send_events(&event(2, "message.sent", data)).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(expected), "{message}");
        assert_eq!(code(err).0, 422);
    }
    // Operators' endpoints want an operator, the inbox a terminal's certificate.
    let (status, _) = code(center.anonymous().terminal_messages(0).unwrap_err());
    assert_eq!(status, 401);
    let (status, _) = code(pc.messages(0, 10, None, None).unwrap_err());
    assert_eq!(status, 401);
    let all = center.operator().messages(0, 100, None, None).unwrap();
    assert_eq!(all.messages.len(), 4);
}
