//! `GET /console/live/stream`: what happens, as server-sent events (one JSON `Happening` per
//! event), for a signed-in console. A watcher that falls behind the broadcast's backlog is told
//! how many it missed and goes on; a keep-alive comment every 15 s keeps proxies from closing
//! an idle stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream;
use tokio::sync::broadcast::error::RecvError;

use crate::Center;
use crate::sessions::SignedIn;

pub async fn stream(State(center): State<Arc<Center>>, _user: SignedIn) -> impl IntoResponse {
    let receiver = center.live.subscribe();
    let events = stream::unfold(receiver, |mut receiver| async move {
        let event = match receiver.recv().await {
            Ok(happening) => Event::default()
                .event("happening")
                .json_data(&happening)
                .unwrap_or_else(|_| Event::default().comment("unserialisable")),
            Err(RecvError::Lagged(missed)) => {
                Event::default().event("missed").data(missed.to_string())
            }
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<Event, Infallible>(event), receiver))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
