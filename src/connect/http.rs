//! HTTP clients for targets behind a private CA or requiring a client certificate (probes).

use super::TlsFiles;

/// A client builder that trusts `tls.ca_file` besides the usual roots and presents the client
/// certificate, when set.
pub fn builder(tls: &TlsFiles) -> Result<reqwest::ClientBuilder, String> {
    let mut builder = crate::http_client::builder();
    if let Some(ca) = &tls.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("ca_file {}: not PEM certificates: {e}", ca.display()))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let Some((cert, key)) = tls.identity() {
        let mut pem =
            std::fs::read(cert).map_err(|e| format!("cert_file {}: {e}", cert.display()))?;
        pem.extend(std::fs::read(key).map_err(|e| format!("key_file {}: {e}", key.display()))?);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
            format!(
                "cert_file {} / key_file {}: not a PEM certificate and key: {e}",
                cert.display(),
                key.display()
            )
        })?;
        builder = builder.identity(identity);
    }
    Ok(builder)
}
