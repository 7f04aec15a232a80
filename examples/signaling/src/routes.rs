//! Routes: the pages, and the small JSON API they call.
//!
//! | method and path | body → reply | does |
//! |---|---|---|
//! | `GET /merchant`, `GET /customer` | | the two pages (`static/`) |
//! | `GET /api/events?role=R` | server-sent events | the page events for role R |
//! | `POST /api/merchant/invite` | `{offer, tracks}` → `{callId, answer, tracks, constraints}` | sends the invitation card |
//! | `POST /api/customer/join` | `{offer, tracks}` → the same | joins from the card |
//! | `POST /api/customer/decline` | | declines the card |
//! | `POST /api/merchant/request-camera` | | "Ask to show the product" |
//! | `POST /api/{role}/camera` | `{on}` | turns the role's own camera on or off |
//! | `POST /api/{role}/hang-up` | | hangs up |
//! | `POST /api/{role}/restart-ice` | `{offer}` → `{answer}` | after a network change |
//!
//! Errors are `{"error": "..."}` with an HTTP status that follows shopcalld's gRPC code
//! (PERMISSION_DENIED → 403, FAILED_PRECONDITION → 409, ...).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio_stream::wrappers::BroadcastStream;

use crate::chat::{Chat, ChatError, DeclaredTrack, Joined};
use crate::page_event::Role;

/// Every route, on one chat.
pub fn router(chat: Arc<Chat>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { Html(include_str!("../static/index.html")) }),
        )
        .route(
            "/merchant",
            get(|| async { Html(include_str!("../static/merchant.html")) }),
        )
        .route(
            "/customer",
            get(|| async { Html(include_str!("../static/customer.html")) }),
        )
        .route("/static/{file}", get(asset))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/api/events", get(events))
        .route("/api/merchant/invite", post(invite))
        .route("/api/merchant/request-camera", post(request_camera))
        .route("/api/customer/join", post(join))
        .route("/api/customer/decline", post(decline))
        .route("/api/{role}/camera", post(camera))
        .route("/api/{role}/hang-up", post(hang_up))
        .route("/api/{role}/restart-ice", post(restart_ice))
        .with_state(chat)
}

/// The pages' scripts and style sheet, compiled into the binary.
async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "call.js" => (include_str!("../static/call.js"), "text/javascript"),
        "merchant.js" => (include_str!("../static/merchant.js"), "text/javascript"),
        "customer.js" => (include_str!("../static/customer.js"), "text/javascript"),
        "style.css" => (include_str!("../static/style.css"), "text/css"),
        _ => return (StatusCode::NOT_FOUND, "not found").into_response(),
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

#[derive(Deserialize)]
struct WhoAsks {
    role: Role,
}

/// The page events of one role, as server-sent events (`data: {json}`).
async fn events(
    State(chat): State<Arc<Chat>>,
    Query(WhoAsks { role }): Query<WhoAsks>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let greeting = chat.greeting(role);
    let later = BroadcastStream::new(chat.subscribe()).filter_map(move |item| async move {
        // A page that fell behind misses events; the call's end still reaches it.
        let out = item.ok()?;
        out.to.includes(role).then_some(out.event)
    });
    let stream = futures::stream::iter(greeting).chain(later).map(|event| {
        Ok(Event::default()
            .json_data(event)
            .expect("page events serialize"))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[derive(Deserialize)]
struct OfferBody {
    offer: String,
    #[serde(default)]
    tracks: Vec<DeclaredTrack>,
}

async fn invite(
    State(chat): State<Arc<Chat>>,
    Json(body): Json<OfferBody>,
) -> Result<Json<Joined>, ApiError> {
    Ok(Json(chat.invite(body.offer, body.tracks).await?))
}

async fn join(
    State(chat): State<Arc<Chat>>,
    Json(body): Json<OfferBody>,
) -> Result<Json<Joined>, ApiError> {
    Ok(Json(chat.join(body.offer, body.tracks).await?))
}

async fn decline(State(chat): State<Arc<Chat>>) -> Result<Json<serde_json::Value>, ApiError> {
    chat.decline().await?;
    Ok(Json(json!({})))
}

async fn request_camera(
    State(chat): State<Arc<Chat>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    chat.request_camera().await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct CameraBody {
    on: bool,
}

async fn camera(
    State(chat): State<Arc<Chat>>,
    Path(role): Path<Role>,
    Json(body): Json<CameraBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    chat.set_camera(role, body.on).await?;
    Ok(Json(json!({})))
}

async fn hang_up(
    State(chat): State<Arc<Chat>>,
    Path(role): Path<Role>,
) -> Result<Json<serde_json::Value>, ApiError> {
    chat.hang_up(role).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct RestartBody {
    offer: String,
}

async fn restart_ice(
    State(chat): State<Arc<Chat>>,
    Path(role): Path<Role>,
    Json(body): Json<RestartBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let answer = chat.restart_ice(role, body.offer).await?;
    Ok(Json(json!({ "answer": answer })))
}

/// A failed request, as `{"error": "..."}` with a fitting HTTP status.
struct ApiError(ChatError);

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self.0 {
            ChatError::Grpc(s) => (http_status(s.code()), s.message().to_owned()),
            ChatError::Conflict(m) => (StatusCode::CONFLICT, m.to_owned()),
            ChatError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
        };
        tracing::info!(%status, %message, "request refused");
        (status, Json(json!({ "error": message }))).into_response()
    }
}

/// shopcalld's gRPC code as an HTTP status for the page.
fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code;
    match code {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted | Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_what_a_page_can_act_on() {
        assert_eq!(
            http_status(tonic::Code::PermissionDenied),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            http_status(tonic::Code::FailedPrecondition),
            StatusCode::CONFLICT
        );
        assert_eq!(
            http_status(tonic::Code::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(http_status(tonic::Code::Internal), StatusCode::BAD_GATEWAY);
    }
}
