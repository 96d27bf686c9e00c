//! The web console (SPEC §3.6): `/console/` on the center and on every site server. Pages are
//! HTML rendered on the server (`pages.rs`, framed by `view.rs`) with one small script for the
//! live view (`assets/console.js`, server-sent events from `live_stream.rs`); every asset is
//! compiled into the binary, so the console works on a machine with no internet.
//!
//! Sign-in (`crate::sessions`, the domain side) trades an API token or a one-time link for a
//! session cookie (HttpOnly, Secure, SameSite=Strict). Every page needs a session; every action
//! (a POST) also needs the session's CSRF token in the form and a role that may take it (an
//! analyst's or operator's to judge samples, an operator's for everything else), and a request
//! whose `Origin` is another site is refused. Pages are sent with a content security policy that
//! allows no inline script and no other origin.

mod alerts;
mod consent;
mod faults;
mod live_stream;
mod pages;
mod rollouts;
mod samples;
mod signatures;
mod view;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;
use serde::de::DeserializeOwned;

use crate::Center;
use crate::error::{CenterError, ErrorKind};
use crate::sessions::{COOKIE, ConsoleRole, NoSession, SignedIn, same_secret};
use view::Tier;

/// The console's routes, for a center or a site server.
pub fn router(center: Arc<Center>) -> Router {
    // Consent links answer at the center, where consent requests live.
    let consent = if center.site().is_none() {
        Router::new().route("/consent/{token}", get(consent::open).post(consent::answer))
    } else {
        Router::new()
    };
    Router::new()
        .merge(consent)
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(pages::overview))
        .route("/console/login", get(pages::login_form).post(sign_in))
        .route(
            "/console/link/{secret}",
            get(pages::link_confirm).post(take_link),
        )
        .route("/console/logout", post(sign_out))
        .route("/console/terminals", get(pages::terminals))
        .route("/console/terminals/{id}", get(pages::terminal))
        .route("/console/exposed", get(pages::exposed))
        .route("/console/coverage", get(pages::coverage))
        .route("/console/groups", get(pages::groups))
        .route("/console/rules", post(pages::save_rules))
        .route("/console/sites", get(pages::sites))
        .route(
            "/console/rollouts",
            get(rollouts::rollouts).post(rollouts::act),
        )
        .route(
            "/console/samples",
            get(samples::samples).post(samples::judge),
        )
        .route("/console/signatures", get(signatures::signatures))
        .route("/console/faults", get(faults::faults))
        .route("/console/faults/{id}", get(faults::bucket))
        .route("/console/alerts", get(alerts::alerts))
        .route("/console/messages", post(alerts::send))
        .route("/console/live", get(pages::live))
        .route("/console/live/stream", get(live_stream::stream))
        .route("/console/static/{file}", get(asset))
        // A route, not a fallback: the API router this is merged into has its own fallback.
        .route(
            "/console/{*rest}",
            get(|| async { PageError::not_found("no such page") }),
        )
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(center)
}

fn tier(center: &Center) -> Tier {
    if center.site().is_some() {
        Tier::Site
    } else {
        Tier::Center
    }
}

// ---------------------------------------------------------------------------------------------
// Errors as pages

/// A page's failure: shown as a page with its status, or, for a reader without a session, a
/// redirect to sign-in that says why.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub message: String,
    /// Set when the request had no valid session.
    pub no_session: Option<(NoSession, bool)>,
}

pub type PageResult = Result<Response, PageError>;

impl PageError {
    fn new(status: StatusCode, message: impl Into<String>) -> PageError {
        PageError {
            status,
            message: message.into(),
            no_session: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn forbidden(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::FORBIDDEN, message)
    }

    pub fn not_found(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<CenterError> for PageError {
    fn from(err: CenterError) -> PageError {
        let status = crate::api::error::status(err.kind);
        if status.is_server_error() {
            tracing::error!(%err, "console page failed");
        }
        PageError::new(status, err.message)
    }
}

impl From<herd_store::StoreError> for PageError {
    fn from(err: herd_store::StoreError) -> PageError {
        PageError::from(CenterError::from(err))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if let Some((why, is_read)) = self.no_session {
            if is_read {
                return Redirect::to(&format!("/console/login?why={}", why.as_str()))
                    .into_response();
            }
            let mut response = (
                StatusCode::UNAUTHORIZED,
                error_page(StatusCode::UNAUTHORIZED, why.explain()),
            )
                .into_response();
            forget_cookie(response.headers_mut());
            return response;
        }
        (self.status, error_page(self.status, &self.message)).into_response()
    }
}

fn error_page(status: StatusCode, message: &str) -> maud::Markup {
    view::page(
        status.canonical_reason().unwrap_or("Error"),
        Tier::Center,
        None,
        None,
        html! {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
            p.error role="alert" { (message) }
            p { a href="/console/" { "Back to the console" } }
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Sessions and actions

/// The session cookie's value, if the request carries one.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

impl FromRequestParts<Arc<Center>> for SignedIn {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        center: &Arc<Center>,
    ) -> Result<SignedIn, PageError> {
        let is_read = parts.method == Method::GET || parts.method == Method::HEAD;
        let refuse = |why| PageError {
            status: StatusCode::UNAUTHORIZED,
            message: String::new(),
            no_session: Some((why, is_read)),
        };
        let Some(secret) = session_cookie(&parts.headers) else {
            return Err(refuse(NoSession::Absent));
        };
        match center.console_session(secret).await? {
            Ok(user) => Ok(user),
            Err(why) => Err(refuse(why)),
        }
    }
}

/// An action needs a session of at least role `needs`, the session's CSRF token in its form, and
/// (when the browser sends one) an `Origin` that is this console's.
pub fn authorise_action(
    user: &SignedIn,
    headers: &HeaderMap,
    form: &[(String, String)],
    needs: ConsoleRole,
) -> Result<(), PageError> {
    if !same_origin(headers) {
        return Err(PageError::forbidden(
            "this action came from another site's page; it must come from this console's own",
        ));
    }
    let token = form_field(form, "csrf").unwrap_or("");
    if !same_secret(token, &user.csrf) {
        return Err(PageError::forbidden(
            "this form is out of date or was not sent by this console (its CSRF token does \
             not match your session); reload the page and try again",
        ));
    }
    if user.role < needs {
        return Err(PageError::forbidden(match needs {
            ConsoleRole::Analyst => format!(
                "a {} may look but not judge samples; ask an analyst or an operator",
                user.role.as_str()
            ),
            _ => format!(
                "a {} may look but not change the fleet's configuration; ask an operator",
                user.role.as_str()
            ),
        }));
    }
    Ok(())
}

/// A form field's first value.
pub fn form_field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(field, _)| field == name)
        .map(|(_, value)| value.as_str())
}

/// `application/x-www-form-urlencoded` fields, with a refusal shown as a page.
#[derive(Debug)]
pub struct Form<T>(pub T);

impl<T, S> FromRequest<S> for Form<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request(request: Request, state: &S) -> Result<Form<T>, PageError> {
        match axum::Form::<T>::from_request(request, state).await {
            Ok(axum::Form(value)) => Ok(Form(value)),
            Err(rejection) => Err(form_refused(rejection)),
        }
    }
}

fn form_refused(rejection: FormRejection) -> PageError {
    PageError::new(
        rejection.status(),
        format!("the form: {}", rejection.body_text()),
    )
}

/// Requests that change something must come from this console's own pages: a browser sends
/// `Origin` with every POST, and a page of another site cannot make it this host.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        // Not a browser's cross-site request (browsers send Origin with POSTs); the session and
        // CSRF token still decide.
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    origin
        .split_once("://")
        .map(|(_, authority)| authority == host)
        .unwrap_or(false)
}

#[derive(serde::Deserialize)]
struct SignInForm {
    token: String,
}

async fn sign_in(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    if !same_origin(&headers) {
        return PageError::forbidden("sign-in must come from this console's own page")
            .into_response();
    }
    match center.console_sign_in(&form.token).await {
        Ok(opened) => signed_in(&opened.secret),
        Err(err) => {
            let status = match err.kind {
                ErrorKind::Internal | ErrorKind::Unavailable => crate::api::error::status(err.kind),
                _ => StatusCode::UNAUTHORIZED,
            };
            (
                status,
                pages::login_page(tier(&center), None, Some(&err.message)),
            )
                .into_response()
        }
    }
}

async fn take_link(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
    Path(secret): Path<String>,
) -> Response {
    if !same_origin(&headers) {
        return PageError::forbidden("sign-in must come from this console's own page")
            .into_response();
    }
    match center.console_link_take(&secret).await {
        Ok(opened) => signed_in(&opened.secret),
        Err(err) => (
            StatusCode::UNAUTHORIZED,
            pages::login_page(tier(&center), None, Some(&err.message)),
        )
            .into_response(),
    }
}

async fn sign_out(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
    user: SignedIn,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    if !same_origin(&headers) {
        return Err(PageError::forbidden(
            "sign-out must come from this console's own page",
        ));
    }
    let token = form_field(&form, "csrf").unwrap_or("");
    if !same_secret(token, &user.csrf) {
        return Err(PageError::forbidden(
            "this form was not sent by this console (its CSRF token does not match)",
        ));
    }
    center.console_sign_out(&user).await?;
    let mut response = Redirect::to("/console/login").into_response();
    forget_cookie(response.headers_mut());
    Ok(response)
}

/// The answer to a successful sign-in: the cookie, and the overview.
fn signed_in(secret: &str) -> Response {
    let mut response = Redirect::to("/console/").into_response();
    let cookie = format!("{COOKIE}={secret}; Path=/console; HttpOnly; Secure; SameSite=Strict");
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("a hex secret is a valid header"),
    );
    response
}

fn forget_cookie(headers: &mut HeaderMap) {
    headers.insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "herd_console=; Path=/console; HttpOnly; Secure; SameSite=Strict; Max-Age=0",
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// Assets and headers

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return PageError::not_found("no such file").into_response(),
    };
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // Compiled into the binary: they change only with it.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    response
}

/// Every console response: no framing, no inline script, no other origin, no sniffing, no
/// referrer to other sites (a one-time link's secret is in its path), and pages are not cached.
async fn security_headers(request: Request, next: Next) -> Response {
    let is_asset = request.uri().path().starts_with("/console/static/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: with it a browser sends `Origin: null` with its form posts, which
    // the origin check must refuse.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !is_asset {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; herd_console=abc; b=2")]);
        assert_eq!(session_cookie(&h), Some("abc"));
        let h = headers(&[("cookie", "a=1"), ("cookie", "herd_console=def")]);
        assert_eq!(session_cookie(&h), Some("def"));
        assert_eq!(
            session_cookie(&headers(&[("cookie", "herd_consolex=1")])),
            None
        );
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn another_sites_origin_is_refused() {
        let ok = headers(&[("host", "center:8443"), ("origin", "https://center:8443")]);
        assert!(same_origin(&ok));
        let evil = headers(&[("host", "center:8443"), ("origin", "https://evil.example")]);
        assert!(!same_origin(&evil));
        let null = headers(&[("host", "center:8443"), ("origin", "null")]);
        assert!(!same_origin(&null));
        assert!(same_origin(&headers(&[("host", "center:8443")])));
    }

    #[test]
    fn actions_need_the_csrf_token_the_role_and_this_origin() {
        let operator = SignedIn {
            hash: "h".into(),
            label: "alice".into(),
            role: ConsoleRole::Operator,
            csrf: "right".into(),
        };
        let form = |token: &str| vec![("csrf".to_owned(), token.to_owned())];
        let here = headers(&[("host", "center:8443"), ("origin", "https://center:8443")]);
        let elsewhere = headers(&[("host", "center:8443"), ("origin", "https://evil.example")]);
        let act = |user: &SignedIn, h: &HeaderMap, f: &[(String, String)], needs| {
            authorise_action(user, h, f, needs)
        };
        assert!(act(&operator, &here, &form("right"), ConsoleRole::Operator).is_ok());
        assert!(act(&operator, &here, &form("wrong"), ConsoleRole::Operator).is_err());
        assert!(act(&operator, &here, &[], ConsoleRole::Operator).is_err());
        assert!(act(&operator, &elsewhere, &form("right"), ConsoleRole::Operator).is_err());
        let analyst = SignedIn {
            role: ConsoleRole::Analyst,
            ..operator.clone()
        };
        assert!(act(&analyst, &here, &form("right"), ConsoleRole::Analyst).is_ok());
        let err = act(&analyst, &here, &form("right"), ConsoleRole::Operator).unwrap_err();
        assert_eq!(err.status, StatusCode::FORBIDDEN);
        let viewer = SignedIn {
            role: ConsoleRole::Viewer,
            ..operator
        };
        for needs in [ConsoleRole::Analyst, ConsoleRole::Operator] {
            let err = act(&viewer, &here, &form("right"), needs).unwrap_err();
            assert_eq!(err.status, StatusCode::FORBIDDEN);
        }
    }
}
