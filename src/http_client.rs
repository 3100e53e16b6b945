//! One way to build HTTP clients. reqwest is built without a bundled TLS crypto provider (ring
//! already comes with async-nats), and building any client panics without one: install it once.

use std::sync::Once;

pub fn builder() -> reqwest::ClientBuilder {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Err: another part of the program installed a provider first, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
}
