//! The TLS client for each `sslmode`: the roots, and the certificate
//! checks ([`SslMode`]).
use std::{path::PathBuf, sync::Arc};

use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject as _},
};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{PgError, SslMode};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS client of a mode. The roots: the CA bundle given
/// (`sslrootcert=FILE`), else the platform's (as the agents' TLS to the
/// collector); `sslrootcert=system` names the platform's explicitly.
pub(super) fn tls_config(
    mode: SslMode,
    root_cert: Option<&str>,
) -> Result<MakeRustlsConnect, PgError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Tls(e.to_string()))?
        .dangerous();
    let verifier: Arc<dyn ServerCertVerifier> = if mode.verifies() {
        let roots = match root_cert {
            Some(path) if path != "system" => ca_bundle(path)?,
            _ => native_roots()?,
        };
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| PgError::Tls(e.to_string()))?;
        if mode == SslMode::VerifyCa {
            Arc::new(ChainOnly(webpki))
        } else {
            webpki
        }
    } else {
        Arc::new(Unchecked(provider))
    };
    Ok(MakeRustlsConnect::new(
        builder
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
    ))
}

fn ca_bundle(path: &str) -> Result<rustls::RootCertStore, PgError> {
    let file = PathBuf::from(path);
    let pem = std::fs::read(&file).map_err(|e| PgError::Ca {
        path: file.clone(),
        why: e.to_string(),
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| PgError::Ca {
            path: file.clone(),
            why: e.to_string(),
        })?;
        roots.add(cert).map_err(|e| PgError::Ca {
            path: file.clone(),
            why: e.to_string(),
        })?;
    }
    if roots.is_empty() {
        return Err(PgError::Ca {
            path: file,
            why: "no PEM certificate in it".to_owned(),
        });
    }
    Ok(roots)
}

fn native_roots() -> Result<rustls::RootCertStore, PgError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(PgError::Tls(format!(
            "no CA certificate in the platform's store ({:?}); give sslrootcert=FILE",
            found.errors
        )));
    }
    Ok(roots)
}

/// sslmode=verify-ca: the chain as webpki checks it, any host name.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// sslmode=prefer/require without a CA (libpq's meaning): encrypted, the
/// certificate not checked; the handshake's signatures still are.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
