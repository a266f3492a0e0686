//! Authentication and authorization of every request: the one table of which role each route
//! needs ([`access`]), the middleware enforcing it ([`authorize`]), and the [`Caller`]
//! extractor handlers use to attribute what they do.
//!
//! | routes | need |
//! |---|---|
//! | `/healthz`, `/readyz`, `/metrics`, `/openapi.yaml`, `/docs` | nothing |
//! | `POST /v1/executions/{id}/resume` | the body's resume token (credentials optional, for the audit) |
//! | every other `GET`, `POST /v1/workflows/validate`, `POST /v1/workflows/{id}/validate` | viewer |
//! | `POST /v1/executions`, `…/cancel`, `GET …/approvals` (it hands out approvers' tokens) | operator |
//! | writes of workflows and templates; `/v1/secrets`, `/v1/keys`, `/v1/outbox` | admin |
//!
//! `/metrics` is public like the probes: it carries counts and route templates, no run data,
//! and scrapers stay simple; expose the port only to them. Requests that match no route pass,
//! to answer 404.

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use scaff_core::store::Role;

use super::AppState;
use super::error::ApiError;
use crate::auth::{AuthError, AuthMode, Principal};

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// A resume token in the body (checked by the handler); credentials are optional.
    ResumeToken,
    /// Credentials granting at least this role.
    Role(Role),
}

/// The one table of who may call what, by method and route template.
pub fn access(method: &Method, route: &str) -> Access {
    let read = method == Method::GET || method == Method::HEAD;
    match route {
        "/healthz" | "/readyz" | "/metrics" | "/openapi.yaml" | "/docs" => Access::Public,
        "/v1/executions/{id}/resume" => Access::ResumeToken,
        "/v1/workflows/validate" | "/v1/workflows/{id}/validate" => Access::Role(Role::Viewer),
        "/v1/executions/{id}/approvals" => Access::Role(Role::Operator),
        r if r == "/v1/keys"
            || r.starts_with("/v1/keys/")
            || r == "/v1/secrets"
            || r.starts_with("/v1/secrets/")
            || r == "/v1/outbox" =>
        {
            Access::Role(Role::Admin)
        }
        _ if read => Access::Role(Role::Viewer),
        r if r.starts_with("/v1/executions") => Access::Role(Role::Operator),
        // Writes of workflows, templates, and anything added later: admin until decided.
        _ => Access::Role(Role::Admin),
    }
}

/// The authenticated caller, when there is one (none with `--auth none`, or on public routes
/// and token-only resumes).
#[derive(Debug, Clone, Default)]
pub struct Caller(pub Option<Principal>);

impl Caller {
    /// The caller as the audit trail names them (`key:<name>`, `jwt:<sub>`).
    pub fn actor(&self) -> Option<String> {
        self.0.as_ref().map(Principal::actor)
    }

    /// Whether the caller may do what `role` may: always when authentication is off.
    pub fn at_least(&self, state: &AppState, role: Role) -> bool {
        match &self.0 {
            Some(p) => p.role >= role,
            None => state.auth.mode() == AuthMode::None,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller(parts.extensions.get::<Principal>().cloned()))
    }
}

fn refuse(e: AuthError) -> Response {
    let api = match e {
        AuthError::NoRole(_) => ApiError::Forbidden(e.to_string()),
        AuthError::Store(s) => s.into(),
        AuthError::BadToken(ref why) => {
            tracing::info!(why = %why, "refused a bearer token");
            ApiError::Unauthorized(e.to_string())
        }
        other => ApiError::Unauthorized(other.to_string()),
    };
    api.into_response()
}

/// Authenticates the request when its route needs it and checks the caller's role; the
/// caller goes into the request's extensions for [`Caller`].
pub async fn authorize(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if state.auth.mode() == AuthMode::None {
        return next.run(req).await;
    }
    let Some(route) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
    else {
        return next.run(req).await;
    };
    let needs = access(req.method(), &route);
    if needs == Access::Public {
        return next.run(req).await;
    }
    let header = match req.headers().get(header::AUTHORIZATION) {
        Some(v) => match v.to_str() {
            Ok(s) => Some(s.to_string()),
            Err(_) => return refuse(AuthError::Malformed),
        },
        None => None,
    };
    let Some(header) = header else {
        return match needs {
            Access::ResumeToken => next.run(req).await,
            _ => refuse(AuthError::Missing),
        };
    };
    let principal = match state
        .auth
        .authenticate(state.store.as_ref(), &header, state.clock.now())
        .await
    {
        Ok(p) => p,
        Err(e) => return refuse(e),
    };
    if let Access::Role(role) = needs
        && principal.role < role
    {
        return ApiError::Forbidden(format!(
            "{} has the {} role; {} {route} needs {role}",
            principal.actor(),
            principal.role,
            req.method()
        ))
        .into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// Documents the scheme (`bearer`: an API key or a JWT) and, on each operation, what it needs,
/// from the same table the middleware enforces.
pub fn document(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{
        HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
    };
    use utoipa::openapi::{ContentBuilder, ResponseBuilder};
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "An API key (`scaff_…`, from `scaff keys create` or `POST /v1/keys`) or a JWT",
                ))
                .build(),
        ),
    );
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build()
    };
    let unauthorized = problem("No valid credentials (`WWW-Authenticate: Bearer`)");
    let forbidden = problem("The caller's role does not allow this");
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, op) in [
            (Method::GET, &mut item.get),
            (Method::POST, &mut item.post),
            (Method::PUT, &mut item.put),
            (Method::DELETE, &mut item.delete),
            (Method::PATCH, &mut item.patch),
        ] {
            let Some(op) = op else { continue };
            match access(&method, path) {
                Access::Public => op.security = Some(Vec::new()),
                Access::ResumeToken => {
                    op.security = Some(vec![
                        SecurityRequirement::default(),
                        SecurityRequirement::new("bearer", Vec::<String>::new()),
                    ]);
                }
                Access::Role(role) => {
                    op.security = Some(vec![SecurityRequirement::new(
                        "bearer",
                        Vec::<String>::new(),
                    )]);
                    let note = format!("Needs the `{role}` role.");
                    op.description = Some(match op.description.take() {
                        Some(d) if !d.is_empty() => format!("{d}\n\n{note}"),
                        _ => note,
                    });
                    op.responses
                        .responses
                        .entry("401".into())
                        .or_insert_with(|| unauthorized.clone().into());
                    op.responses
                        .responses
                        .entry("403".into())
                        .or_insert_with(|| forbidden.clone().into());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_grants_what_the_docs_say() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(access(&get, "/healthz"), Access::Public);
        assert_eq!(access(&get, "/docs"), Access::Public);
        assert_eq!(
            access(&get, "/v1/executions/{id}"),
            Access::Role(Role::Viewer)
        );
        assert_eq!(access(&get, "/metrics"), Access::Public);
        assert_eq!(
            access(&post, "/v1/executions"),
            Access::Role(Role::Operator)
        );
        assert_eq!(
            access(&post, "/v1/executions/{id}/cancel"),
            Access::Role(Role::Operator)
        );
        assert_eq!(
            access(&post, "/v1/executions/{id}/resume"),
            Access::ResumeToken
        );
        assert_eq!(access(&post, "/v1/workflows"), Access::Role(Role::Admin));
        assert_eq!(
            access(&post, "/v1/workflows/validate"),
            Access::Role(Role::Viewer)
        );
        assert_eq!(access(&post, "/v1/templates"), Access::Role(Role::Admin));
        assert_eq!(access(&get, "/v1/secrets"), Access::Role(Role::Admin));
        assert_eq!(
            access(&Method::DELETE, "/v1/keys/{id}"),
            Access::Role(Role::Admin)
        );
        assert_eq!(access(&get, "/v1/outbox"), Access::Role(Role::Admin));
    }
}
