//! Reading and writing manifests and blobs (the OCI distribution API's
//! pull and push endpoints): what storing a small artifact, reading it
//! back and copying a manifest to another tag need. Every body read is
//! checked against the digest it was asked for, so a registry (or anyone
//! between) cannot hand back other bytes under a digest.

use bytes::Bytes;
use http::{header, Method, StatusCode};

use super::{Credentials, Reference, Registry, RegistryError};

/// A manifest as the registry stores it: its media type and exact bytes
/// (a digest covers the bytes, so they are never re-serialised).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// `Content-Type` of the manifest.
    pub media_type: String,
    /// The bytes.
    pub body: Bytes,
    /// `sha256:` of the bytes.
    pub digest: String,
}

/// `sha256:HEX` of `data`, the digest registries name content by.
pub fn sha256(data: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = String::from("sha256:");
    for b in d.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl Registry {
    /// The manifest under `r` (tag or digest), `None` when there is none.
    /// A manifest asked for by digest must have that digest.
    pub async fn manifest(
        &self,
        r: &Reference,
        creds: &Credentials,
    ) -> Result<Option<Manifest>, RegistryError> {
        let path = format!("/v2/{}/manifests/{}", r.repository, r.reference);
        let reply = self
            .call(&r.registry, &r.repository, Method::GET, &path, None, creds)
            .await?;
        match reply.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => return Err(self.unexpected(&r.registry, &reply, &format!("GET {path}"))),
        }
        let digest = sha256(&reply.body);
        if r.reference.contains(':') && r.reference != digest {
            return Err(RegistryError::Protocol {
                registry: r.registry.clone(),
                what: format!("a manifest whose digest is {digest}, not {}", r.reference),
            });
        }
        let media_type = reply
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Ok(Some(Manifest {
            media_type,
            body: reply.body,
            digest,
        }))
    }

    /// The blob `digest` of `repository`, checked against its digest;
    /// `None` when the registry has none.
    pub async fn blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
        creds: &Credentials,
    ) -> Result<Option<Bytes>, RegistryError> {
        let path = format!("/v2/{repository}/blobs/{digest}");
        let reply = self
            .call(registry, repository, Method::GET, &path, None, creds)
            .await?;
        match reply.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => return Err(self.unexpected(registry, &reply, &format!("GET {path}"))),
        }
        let got = sha256(&reply.body);
        if got != digest {
            return Err(RegistryError::Protocol {
                registry: registry.to_string(),
                what: format!("a blob whose digest is {got}, not {digest}"),
            });
        }
        Ok(Some(reply.body))
    }

    /// Uploads `data` as a blob of `repository` in one request (a
    /// monolithic upload: POST for a session, PUT with the digest); a blob
    /// the registry already has is not sent again. Its digest.
    pub async fn put_blob(
        &self,
        registry: &str,
        repository: &str,
        data: Bytes,
        creds: &Credentials,
    ) -> Result<String, RegistryError> {
        let digest = sha256(&data);
        let head = format!("/v2/{repository}/blobs/{digest}");
        let reply = self
            .call(registry, repository, Method::HEAD, &head, None, creds)
            .await?;
        if reply.status == StatusCode::OK {
            return Ok(digest);
        }
        let start = format!("/v2/{repository}/blobs/uploads/");
        let reply = self
            .call(registry, repository, Method::POST, &start, None, creds)
            .await?;
        if reply.status != StatusCode::ACCEPTED {
            return Err(self.unexpected(registry, &reply, &format!("POST {start}")));
        }
        let location = reply
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Protocol {
                registry: registry.to_string(),
                what: "an upload session without a Location".into(),
            })?;
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={}", super::encode(&digest));
        let reply = self
            .call(
                registry,
                repository,
                Method::PUT,
                &put,
                Some(("application/octet-stream", data)),
                creds,
            )
            .await?;
        if reply.status != StatusCode::CREATED {
            return Err(self.unexpected(registry, &reply, "PUT a blob upload"));
        }
        Ok(digest)
    }

    /// Stores `body` (of `media_type`) as a manifest under `r` (a tag); its
    /// digest.
    pub async fn put_manifest(
        &self,
        r: &Reference,
        media_type: &str,
        body: Bytes,
        creds: &Credentials,
    ) -> Result<String, RegistryError> {
        let digest = sha256(&body);
        let path = format!("/v2/{}/manifests/{}", r.repository, r.reference);
        let reply = self
            .call(
                &r.registry,
                &r.repository,
                Method::PUT,
                &path,
                Some((media_type, body)),
                creds,
            )
            .await?;
        if reply.status != StatusCode::CREATED {
            let text = String::from_utf8_lossy(&reply.body);
            return Err(RegistryError::Protocol {
                registry: r.registry.clone(),
                what: format!(
                    "HTTP {} to PUT {path}: {}",
                    reply.status,
                    text.chars().take(300).collect::<String>()
                ),
            });
        }
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_names_content_as_registries_do() {
        assert_eq!(
            sha256(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
