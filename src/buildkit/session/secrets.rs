//! The Secrets service: answers `RUN --mount=type=secret,id=…` lookups from
//! the secrets given to the session. Unknown ids answer `NotFound`, which the
//! daemon treats as "no such secret" (optional mounts are then skipped).

use std::collections::HashMap;

use bytes::Bytes;
use tonic::{Request, Response, Status};

use crate::buildkit::proto::moby::buildkit::secrets::v1::{
    secrets_server::Secrets, GetSecretRequest, GetSecretResponse,
};

/// Serves the session's build secrets.
#[derive(Debug, Default)]
pub struct SecretsService {
    secrets: HashMap<String, Bytes>,
}

impl SecretsService {
    /// A service answering with these secrets.
    pub fn new(secrets: HashMap<String, Bytes>) -> Self {
        Self { secrets }
    }
}

#[tonic::async_trait]
impl Secrets for SecretsService {
    async fn get_secret(
        &self,
        request: Request<GetSecretRequest>,
    ) -> Result<Response<GetSecretResponse>, Status> {
        let id = request.into_inner().id;
        match self.secrets.get(&id) {
            Some(data) => Ok(Response::new(GetSecretResponse {
                data: data.to_vec(),
            })),
            None => Err(Status::not_found(format!("secret {id} not found"))),
        }
    }
}
