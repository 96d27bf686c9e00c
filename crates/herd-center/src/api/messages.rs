//! Messages: operators send and read them (`/v1/messages`); a terminal reads its inbox with
//! its certificate (`/v1/terminal/messages`). Terminals answer through their outbox (a
//! `message.sent` event, `POST /v1/events`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herd_proto::api::ErrorBody;
use herd_proto::messages::{Message, MessageList, MessageToSend};
use serde::Deserialize;

use super::extract::{JsonBody, JsonRequest, Operator, Query, TerminalIdentity};
use crate::{Center, CenterResult};

impl JsonRequest for MessageToSend {
    const WHAT: &'static str = "the message";
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only messages after this id (the last one seen).
    after: Option<u64>,
    /// At most this many, 1 to 500 [default 100].
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// Only the thread with this terminal (messages to it and its answers).
    terminal: Option<String>,
    /// Only this site's thread (messages to and from its terminals).
    site: Option<String>,
}

/// Send a message to all terminals' users, a group's, or one terminal's.
#[utoipa::path(post, path = "/v1/messages", tag = "operators", request_body = MessageToSend,
    responses(
        (status = 201, body = Message),
        (status = 400, body = ErrorBody, description = "`bad_request`: a `to` that is none of all, group:ID, terminal:ID"),
        (status = 404, body = ErrorBody, description = "`not_found`: no such group or terminal"),
        (status = 422, body = ErrorBody, description = "`bad_request`: an empty or overlong text"),
    ))]
pub async fn send(
    State(center): State<Arc<Center>>,
    _: Operator,
    JsonBody(request): JsonBody<MessageToSend>,
) -> CenterResult<(StatusCode, Json<Message>)> {
    let message = center.send_message(request).await?;
    Ok((StatusCode::CREATED, Json(message)))
}

/// Messages oldest first: all, one terminal's thread, or one site's.
#[utoipa::path(get, path = "/v1/messages", tag = "operators", params(ListParams),
    responses((status = 200, body = MessageList), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(center): State<Arc<Center>>,
    _: Operator,
    Query(params): Query<ListParams>,
) -> CenterResult<Json<MessageList>> {
    center
        .messages(
            params.after,
            params.limit,
            params.terminal.as_deref(),
            params.site.as_deref(),
        )
        .await
        .map(Json)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InboxParams {
    /// Only messages after this id (the last one shown).
    after: Option<u64>,
    /// At most this many, 1 to 500 [default 100].
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// The calling terminal's messages: to all, to its group, to it.
#[utoipa::path(get, path = "/v1/terminal/messages", tag = "terminals", params(InboxParams),
    responses((status = 200, body = MessageList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn inbox(
    State(center): State<Arc<Center>>,
    TerminalIdentity(terminal): TerminalIdentity,
    Query(params): Query<InboxParams>,
) -> CenterResult<Json<MessageList>> {
    center
        .terminal_messages(&terminal, params.after, params.limit)
        .await
        .map(Json)
}
