//! The optional bearer token: when the server has one, every call of the segstream
//! service must carry `authorization: Bearer <token>` or is refused with UNAUTHENTICATED.
//! (Health checks stay open, so orchestrators can probe without the secret.)

use std::sync::Arc;

use tonic::service::Interceptor;
use tonic::{Request, Status};

#[derive(Clone, Default)]
pub struct BearerAuth {
    token: Option<Arc<[u8]>>,
}

impl BearerAuth {
    pub fn new(token: Option<&str>) -> Self {
        Self { token: token.filter(|t| !t.is_empty()).map(|t| Arc::from(t.as_bytes())) }
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = &self.token else { return Ok(request) };
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::as_bytes);
        match given {
            Some(given) if constant_time_eq(given, token) => Ok(request),
            Some(_) => Err(Status::unauthenticated("the bearer token is not the server's")),
            None => Err(Status::unauthenticated(
                "this server needs `authorization: Bearer <token>` (segstream: --token or SEGSTREAM_TOKEN)",
            )),
        }
    }
}

/// Compares without returning early, so timing does not tell how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(header: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(h) = header {
            request.metadata_mut().insert("authorization", h.parse().unwrap());
        }
        request
    }

    #[test]
    fn refuses_missing_and_wrong_tokens() {
        let mut auth = BearerAuth::new(Some("s3cret"));
        assert!(auth.call(with(Some("Bearer s3cret"))).is_ok());
        assert_eq!(auth.call(with(None)).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(auth.call(with(Some("Bearer nope"))).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(auth.call(with(Some("s3cret"))).unwrap_err().code(), tonic::Code::Unauthenticated);
        let mut open = BearerAuth::new(None);
        assert!(open.call(with(None)).is_ok());
    }
}
