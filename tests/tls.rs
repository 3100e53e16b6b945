//! Real estates: PostgreSQL that accepts TLS only (with a private CA, and with client
//! certificates), nats-server with TLS from a private CA, with client certificates and with nkey
//! users, and an HTTPS probe — every CA and certificate made in the test. Each works with the
//! right settings, and each wrong setting is named as such by `gameday check`, exit 1.

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use gameday::config::Config;
use gameday::faults::{self, FaultContext};
use gameday::services::{PgCluster, PgOptions, find_nats_server};
use sqlx::{ConnectOptions, Connection};
use support::pki::{Pair, Pki};
use support::{free_port, gameday, test_dir, wait_until};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `gameday check` with `config`: exit code and everything it printed.
fn check(dir: &Path, config: &Path) -> (Option<i32>, String) {
    let out = gameday(dir, &["check", "--config", &config.display().to_string()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// The latest value of every metric, from `gameday snapshot --json`.
fn snapshot(dir: &Path, config: &Path) -> serde_json::Value {
    let out = gameday(
        dir,
        &[
            "snapshot",
            "--config",
            &config.display().to_string(),
            "--json",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

// --- PostgreSQL -----------------------------------------------------------------------------

/// A cluster that takes TCP connections over TLS only: `tlsonly` with no client certificate,
/// `certuser` with a client certificate from the CA, `app` with a password.
struct Pg {
    cluster: PgCluster,
    pki: Pki,
    other: Pki,
    dir: PathBuf,
}

impl Pg {
    fn start(runtime: &tokio::runtime::Runtime, name: &str) -> Pg {
        let dir = test_dir(name);
        let pki = Pki::new(&dir.join("pki"), "db");
        let other = Pki::new(&dir.join("pki"), "other");
        let server = pki.server("db-server");
        let hba = write(
            &dir.join("pki/pg_hba.conf"),
            "local all all trust\n\
             hostssl all postgres 127.0.0.1/32 trust\n\
             hostssl all tlsonly 127.0.0.1/32 trust\n\
             hostssl all certuser 127.0.0.1/32 trust clientcert=verify-ca\n\
             hostssl all app 127.0.0.1/32 scram-sha-256\n",
        );
        give_to_postgres(&[&server.cert, &server.key, &pki.ca, &hba]);
        let mut options = PgOptions::new(dir.join("pg"));
        options.settings = vec![
            ("ssl".into(), "on".into()),
            ("ssl_cert_file".into(), server.cert.display().to_string()),
            ("ssl_key_file".into(), server.key.display().to_string()),
            ("ssl_ca_file".into(), pki.ca.display().to_string()),
            ("hba_file".into(), hba.display().to_string()),
        ];
        let cluster = runtime
            .block_on(PgCluster::start(options))
            .expect("start PostgreSQL");
        for role in ["tlsonly", "certuser"] {
            runtime
                .block_on(cluster.create_role(role, "unused"))
                .unwrap();
        }
        runtime
            .block_on(cluster.create_role("app", "app-pw"))
            .unwrap();
        Pg {
            cluster,
            pki,
            other,
            dir,
        }
    }

    /// A config watching the cluster as `user`, with `settings` in `[postgres]`.
    fn config(&self, name: &str, user: &str, settings: &str) -> PathBuf {
        write(
            &self.dir.join(format!("{name}.toml")),
            &format!(
                "[console]\nartifacts = \"{}\"\n\n[postgres]\nurl = \"postgres://{user}@localhost:{}/postgres\"\n{settings}\n\n\
                 [[fault]]\nname = \"hold\"\nkind = \"pg_exhaust\"\nconnections = 2\nstate = \"idle\"\napplication_name = \"tls-hold\"\n",
                self.dir.join("artifacts").display(),
                self.cluster.port()
            ),
        )
    }
}

/// As root the server runs as `postgres`, which must own its key and read the rest.
fn give_to_postgres(files: &[&Path]) {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
    for file in files {
        nix::unistd::chown(*file, Some(user.uid), Some(user.gid)).unwrap();
    }
}

/// TLS sessions of `application_name`, seen by the superuser.
async fn tls_sessions(cluster: &PgCluster, application_name: &str) -> i64 {
    let mut admin = cluster
        .superuser_options("postgres")
        .connect()
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar(
        "select count(*) from pg_stat_activity a join pg_stat_ssl s using (pid) \
         where a.application_name = $1 and s.ssl",
    )
    .bind(application_name)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    n
}

#[test]
fn postgres_over_tls_only_works_with_verify_full_and_names_each_wrong_setting() {
    let runtime = runtime();
    let pg = Pg::start(&runtime, "tls-pg");
    let ca = pg.pki.ca.display().to_string();

    // verify-full with the right root: the source, `check` and a fault all work, over TLS.
    let good = pg.config(
        "good",
        "tlsonly",
        &format!("sslmode = \"verify-full\"\nsslrootcert = \"{ca}\""),
    );
    let (code, text) = check(&pg.dir, &good);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(snapshot(&pg.dir, &good)["pg.up"], 1.0);
    let config = Arc::new(Config::load(&good).unwrap());
    let ctx = FaultContext::new(config.clone(), None);
    let mut hold = faults::build("hold-tls-1", &config.faults[0].spec);
    runtime.block_on(async {
        hold.inject(&ctx).await.expect("pg_exhaust over TLS");
        assert_eq!(tls_sessions(&pg.cluster, "tls-hold").await, 2);
        hold.revert(&ctx).await.unwrap();
        assert_eq!(tls_sessions(&pg.cluster, "tls-hold").await, 0);
    });

    // The wrong root certificate: an unknown authority, and the setting to fix.
    let other = pg.other.ca.display().to_string();
    let wrong_root = pg.config(
        "wrong-root",
        "tlsonly",
        &format!("sslmode = \"verify-full\"\nsslrootcert = \"{other}\""),
    );
    let (code, text) = check(&pg.dir, &wrong_root);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("unknown authority: set `sslrootcert`"),
        "{text}"
    );

    // No TLS at all against a server that takes TLS only.
    let plain = pg.config("plain", "tlsonly", "sslmode = \"disable\"");
    let (code, text) = check(&pg.dir, &plain);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("accepts only TLS"), "{text}");
}

#[test]
fn postgres_requiring_a_client_certificate_and_a_password_file() {
    let runtime = runtime();
    let pg = Pg::start(&runtime, "tls-pg-cert");
    let ca = pg.pki.ca.display().to_string();
    let Pair { cert, key } = pg.pki.client("certuser", "certuser");

    let without = pg.config(
        "no-cert",
        "certuser",
        &format!("sslmode = \"verify-full\"\nsslrootcert = \"{ca}\""),
    );
    let (code, text) = check(&pg.dir, &without);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("requires a client certificate it accepts: set `sslcert` and `sslkey`"),
        "{text}"
    );
    let with = pg.config(
        "cert",
        "certuser",
        &format!(
            "sslmode = \"verify-full\"\nsslrootcert = \"{ca}\"\nsslcert = \"{}\"\nsslkey = \"{}\"",
            cert.display(),
            key.display()
        ),
    );
    let (code, text) = check(&pg.dir, &with);
    assert_eq!(code, Some(0), "{text}");

    // The password from a .pgpass-format file; a wrong one is refused as credentials.
    let port = pg.cluster.port();
    let passfile = write(
        &pg.dir.join("pgpass"),
        &format!("localhost:{port}:postgres:app:app-pw\n"),
    );
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    let with_pass = pg.config(
        "pass",
        "app",
        &format!(
            "sslmode = \"require\"\npassfile = \"{}\"",
            passfile.display()
        ),
    );
    let (code, text) = check(&pg.dir, &with_pass);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        !text.contains("app-pw"),
        "no password in the output: {text}"
    );
    write(&passfile, &format!("localhost:{port}:postgres:app:wrong\n"));
    let (code, text) = check(&pg.dir, &with_pass);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("credentials refused"), "{text}");

    // A file that does not exist is bad input: exit 2, naming the key.
    let missing = pg.config("missing", "app", "sslrootcert = \"no-such-ca.pem\"");
    let (code, text) = check(&pg.dir, &missing);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("postgres.sslrootcert") && text.contains("no such file"),
        "{text}"
    );
}

// --- NATS and HTTPS ----------------------------------------------------------------------

/// nats-server started from a config file, killed when dropped.
struct Nats {
    child: Child,
    port: u16,
    https: u16,
    dir: PathBuf,
}

impl Nats {
    /// `body` is the server config besides the listen addresses.
    fn start(dir: &Path, name: &str, body: &str) -> Nats {
        let port = free_port();
        let https = free_port();
        let conf = write(
            &dir.join(format!("{name}.conf")),
            &format!("listen: 127.0.0.1:{port}\n{body}\n"),
        );
        let conf_text = std::fs::read_to_string(&conf).unwrap();
        let conf = if conf_text.contains("tls {") {
            write(&conf, &format!("{conf_text}\nhttps: 127.0.0.1:{https}\n"))
        } else {
            conf
        };
        let child = Command::new(find_nats_server().expect("nats-server"))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
            .spawn()
            .unwrap();
        wait_until("nats-server listens", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Nats {
            child,
            port,
            https,
            dir: dir.to_path_buf(),
        }
    }

    /// A config watching this server with `settings` in `[nats]` (and `extra` after it).
    fn config(&self, name: &str, settings: &str, extra: &str) -> PathBuf {
        write(
            &self.dir.join(format!("{name}.toml")),
            &format!(
                "[console]\nartifacts = \"{}\"\n\n[nats]\nurl = \"nats://localhost:{}\"\ntimeout = \"2s\"\n{settings}\n\n{extra}",
                self.dir.join("artifacts").display(),
                self.port
            ),
        )
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn nats_with_a_private_ca_client_certificates_and_an_https_probe() {
    let dir = test_dir("tls-nats");
    let pki = Pki::new(&dir.join("pki"), "nats");
    let server = pki.server("nats-server");
    let tls = format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n}}\njetstream {{ store_dir: \"{}\" }}",
        server.cert.display(),
        server.key.display(),
        pki.ca.display(),
        dir.join("js").display()
    );
    let nats = Nats::start(&dir, "tls", &tls);
    let ca = pki.ca.display().to_string();
    let probe = format!(
        "[[probe]]\nname = \"monitor\"\nurl = \"https://localhost:{}/healthz\"\nca_file = \"{ca}\"\n",
        nats.https
    );
    let good = nats.config(
        "good",
        &format!("ca_file = \"{ca}\""),
        &format!(
            "{probe}\n[[fault]]\nname = \"flood\"\nkind = \"nats_flood\"\nsubject = \"tls.flood\"\ncount = 5\nrate = 100\n"
        ),
    );
    let (code, text) = check(&dir, &good);
    assert_eq!(code, Some(0), "{text}");
    let values = snapshot(&dir, &good);
    assert_eq!(values["nats.up"], 1.0, "{values}");
    assert_eq!(values["probe.monitor.ok"], 1.0, "{values}");

    // A flood through the same settings reaches a subscriber on the server.
    let runtime = runtime();
    runtime.block_on(async {
        let client = async_nats::ConnectOptions::new()
            .add_root_certificates(pki.ca.clone())
            .require_tls(true)
            .connect(format!("nats://localhost:{}", nats.port))
            .await
            .unwrap();
        let mut sub = client.subscribe("tls.flood").await.unwrap();
        client.flush().await.unwrap();
        let config = Arc::new(Config::load(&good).unwrap());
        let ctx = FaultContext::new(config.clone(), None);
        let mut flood = faults::build("flood-1", &config.faults[0].spec);
        flood.inject(&ctx).await.expect("a flood over TLS");
        for _ in 0..5 {
            tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut sub))
                .await
                .expect("a flooded message arrives")
                .unwrap();
        }
        flood.revert(&ctx).await.unwrap();
    });

    // A webhook forwarded to an https upstream with a private CA (the monitor's /healthz).
    let hook = free_port();
    let bare = free_port();
    let with_hooks = nats.config(
        "hooks",
        &format!("ca_file = \"{ca}\""),
        &format!(
            "[[webhook]]\nname = \"hook\"\nlisten = \"127.0.0.1:{hook}\"\nupstream = \"https://localhost:{https}\"\nca_file = \"{ca}\"\n\n\
             [[webhook]]\nname = \"bare\"\nlisten = \"127.0.0.1:{bare}\"\nupstream = \"https://localhost:{https}\"\n",
            https = nats.https
        ),
    );
    runtime.block_on(async {
        let config = Config::load(&with_hooks).unwrap();
        let mut options = gameday::proxy::AttachOptions::new(Duration::from_secs(3));
        options.daemon_exe = Some(support::GAMEDAY.into());
        let client = gameday::proxy::ProxyClient::attach_with(
            &config.console.artifacts,
            &gameday::console::listener_set(&config),
            options,
        )
        .await
        .unwrap();
        let http = reqwest::Client::new();
        let through = |port: u16| {
            let http = http.clone();
            async move {
                let response = http
                    .get(format!("http://127.0.0.1:{port}/healthz"))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                    .unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            }
        };
        let (status, body) = through(hook).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("ok"), "{body}");
        // Without the CA the forwarder answers 502 and says why.
        let (status, body) = through(bare).await;
        assert_eq!(status, 502, "{body}");
        assert!(
            body.contains("UnknownIssuer") || body.contains("unknown"),
            "{body}"
        );
        client.shutdown_daemon().await.unwrap();
    });

    // Without the CA: the error names it, for the broker and for the probe.
    let no_ca = nats.config(
        "no-ca",
        "",
        &format!(
            "[[probe]]\nname = \"monitor\"\nurl = \"https://localhost:{}/healthz\"\n",
            nats.https
        ),
    );
    let (code, text) = check(&dir, &no_ca);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("unknown authority: set `ca_file` in [nats]"),
        "{text}"
    );
    assert!(
        text.contains("unknown authority: set `ca_file` on the probe"),
        "{text}"
    );
    drop(nats);

    // A server that verifies clients: refused without a certificate, accepted with one.
    let verify = tls.replace("}\njetstream", "  verify: true\n}\njetstream");
    let nats = Nats::start(&dir, "verify", &verify);
    let without = nats.config("no-cert", &format!("ca_file = \"{ca}\""), "");
    let (code, text) = check(&dir, &without);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("requires a client certificate"), "{text}");
    let Pair { cert, key } = pki.client("gameday-client", "gameday");
    let with = nats.config(
        "cert",
        &format!(
            "ca_file = \"{ca}\"\ncert_file = \"{}\"\nkey_file = \"{}\"",
            cert.display(),
            key.display()
        ),
        "",
    );
    let (code, text) = check(&dir, &with);
    assert_eq!(code, Some(0), "{text}");
}

#[test]
fn nats_nkey_users_accept_the_right_seed_and_refuse_another() {
    let dir = test_dir("tls-nkey");
    let user = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    let nats = Nats::start(
        &dir,
        "nkey",
        &format!(
            "authorization {{ users: [ {{ nkey: \"{}\" }} ] }}",
            user.public_key()
        ),
    );
    let seed = dir.join("user.nk");
    let mut file = std::fs::File::create(&seed).unwrap();
    writeln!(file, "{}", user.seed().unwrap()).unwrap();
    std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o600)).unwrap();
    let good = nats.config("good", &format!("nkey = \"{}\"", seed.display()), "");
    let (code, text) = check(&dir, &good);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(snapshot(&dir, &good)["nats.up"], 1.0);

    // A seed from the environment that the server does not know.
    let wrong = nats.config("wrong", "nkey = \"${WRONG_SEED}\"", "");
    let out = Command::new(support::GAMEDAY)
        .args(["check", "--config", &wrong.display().to_string()])
        .current_dir(&dir)
        .env("WRONG_SEED", stranger.seed().unwrap())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("credentials refused"), "{text}");
    assert!(
        !text.contains(&stranger.seed().unwrap()),
        "the seed is never shown: {text}"
    );
}

/// A NATS JWT (v2) with `claims`, signed by `issuer`.
fn jwt(issuer: &nkeys::KeyPair, claims: serde_json::Value) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let payload = b64.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let signature = b64.encode(issuer.sign(signed.as_bytes()).unwrap());
    format!("{signed}.{signature}")
}

fn claims(
    issuer: &nkeys::KeyPair,
    subject: &str,
    name: &str,
    nats: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "jti": format!("{name}-{}", std::process::id()),
        "iat": chrono::Utc::now().timestamp(),
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    })
}

#[test]
fn nats_in_operator_mode_accepts_a_creds_file_and_refuses_a_stranger() {
    let dir = test_dir("tls-creds");
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let operator_jwt = jwt(
        &operator,
        claims(
            &operator,
            &operator.public_key(),
            "op",
            serde_json::json!({"type": "operator", "version": 2}),
        ),
    );
    let account_jwt = jwt(
        &operator,
        claims(
            &operator,
            &account.public_key(),
            "acc",
            serde_json::json!({
                "limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                           "wildcards": true, "conn": -1, "leaf": -1},
                "default_permissions": {"pub": {}, "sub": {}},
                "type": "account", "version": 2
            }),
        ),
    );
    let user_claims = |user: &nkeys::KeyPair| {
        claims(
            &account,
            &user.public_key(),
            "drill",
            serde_json::json!({"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                               "type": "user", "version": 2}),
        )
    };
    let creds = |name: &str, user: &nkeys::KeyPair, signer: &nkeys::KeyPair| {
        let path = dir.join(format!("{name}.creds"));
        let text = format!(
            "-----BEGIN NATS USER JWT-----\n{}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            jwt(signer, user_claims(user)),
            user.seed().unwrap()
        );
        write(&path, &text);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    };
    let nats = Nats::start(
        &dir,
        "operator",
        &format!(
            "operator: \"{operator_jwt}\"\nresolver: MEMORY\nresolver_preload: {{\n  {}: \"{account_jwt}\"\n}}",
            account.public_key()
        ),
    );
    let good = nats.config(
        "good",
        &format!("creds = \"{}\"", creds("user", &user, &account).display()),
        "",
    );
    let (code, text) = check(&dir, &good);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(snapshot(&dir, &good)["nats.up"], 1.0);

    // A user signed by an account the operator does not know is refused as such.
    let stranger = nkeys::KeyPair::new_account();
    let bad = nats.config(
        "bad",
        &format!(
            "creds = \"{}\"",
            creds("stranger", &nkeys::KeyPair::new_user(), &stranger).display()
        ),
        "",
    );
    let (code, text) = check(&dir, &bad);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("credentials refused"), "{text}");
}

// --- Docker -----------------------------------------------------------------------------------

/// A TLS front on 127.0.0.1 for the local Docker engine that requires a client certificate from
/// `ca`, as a remote engine on `tcp://…:2376` does. Serves on `runtime` until it is dropped.
fn docker_tls_front(runtime: &tokio::runtime::Runtime, server: &Pair, ca: &Path) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = CertificateDer::pem_file_iter(&server.cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&server.key).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    // TLS 1.2: the client certificate is judged inside the handshake, so a refused one reaches
    // the client as the server's alert every time (with 1.3 the client may see only a closed
    // connection, depending on timing).
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    runtime.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut tls = match acceptor.accept(stream).await {
                    Ok(tls) => tls,
                    Err(_refused) => return,
                };
                let Ok(mut engine) = tokio::net::UnixStream::connect("/var/run/docker.sock").await
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut engine).await;
            });
        }
    });
    port
}

/// `DOCKER_CERT_PATH` as the docker CLI reads it: ca.pem, cert.pem, key.pem.
fn cert_path(dir: &Path, ca: &Path, client: &Pair) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(ca, dir.join("ca.pem")).unwrap();
    std::fs::copy(&client.cert, dir.join("cert.pem")).unwrap();
    std::fs::copy(&client.key, dir.join("key.pem")).unwrap();
    dir.to_path_buf()
}

/// The `docker engine` row of `gameday check` against the engine at `port` over TLS.
fn engine_row(dir: &Path, config: &Path, port: u16, certs: &Path) -> String {
    let out = Command::new(support::GAMEDAY)
        .args(["check", "--config", &config.display().to_string()])
        .current_dir(dir)
        .env("DOCKER_HOST", format!("tcp://localhost:{port}"))
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", certs)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find(|l| l.starts_with("docker engine"))
        .unwrap_or_else(|| {
            panic!(
                "no engine row: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string()
}

#[test]
fn a_docker_engine_over_tls_is_reached_with_the_client_certificates_of_docker_cert_path() {
    let dir = test_dir("tls-docker");
    let runtime = runtime();
    let pki = Pki::new(&dir.join("pki"), "docker");
    let other = Pki::new(&dir.join("pki"), "other");
    let port = docker_tls_front(&runtime, &pki.server("engine"), &pki.ca);
    let config = write(
        &dir.join("gameday.toml"),
        &format!(
            "[console]\nartifacts = \"{}\"\n\n[[container]]\nname = \"probe\"\ncontainer = \"gameday-tls-no-such-container\"\n",
            dir.join("artifacts").display()
        ),
    );
    let good = cert_path(
        &dir.join("certs"),
        &pki.ca,
        &pki.client("client", "gameday"),
    );
    let row = engine_row(&dir, &config, port, &good);
    assert!(row.contains("✔ reachable"), "{row}");

    // A client certificate the engine does not trust: named as such, with where it is read from.
    let stranger = cert_path(
        &dir.join("stranger"),
        &pki.ca,
        &other.client("stranger", "x"),
    );
    let row = engine_row(&dir, &config, port, &stranger);
    assert!(
        row.contains("does not accept the client certificate"),
        "{row}"
    );
    assert!(row.contains("DOCKER_CERT_PATH"), "{row}");
}

#[test]
fn nats_certificates_for_another_name_or_out_of_date_and_a_tls_first_server() {
    let dir = test_dir("tls-nats-bad-certs");
    let pki = Pki::new(&dir.join("pki"), "nats");
    let ca = pki.ca.display().to_string();
    let tls = |pair: &Pair, extra: &str| {
        format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n{extra}}}",
            pair.cert.display(),
            pair.key.display()
        )
    };
    let cases = [
        (
            "mismatch",
            pki.server_for(
                "other-name",
                &["broker.internal"],
                (2020, 1, 1),
                (4000, 1, 1),
            ),
            "certificate name mismatch",
        ),
        (
            "expired",
            pki.server_for("expired", &["localhost"], (2000, 1, 1), (2001, 1, 1)),
            "has expired",
        ),
    ];
    for (name, pair, said) in &cases {
        let nats = Nats::start(&dir, name, &tls(pair, ""));
        let config = nats.config(name, &format!("ca_file = \"{ca}\""), "");
        let (code, text) = check(&dir, &config);
        assert_eq!(code, Some(1), "{name}: {text}");
        assert!(text.contains(said), "{name}: {text}");
    }

    // A server that wants the TLS handshake before anything else.
    let server = pki.server("first");
    let nats = Nats::start(&dir, "first", &tls(&server, "  handshake_first: true\n"));
    let config = nats.config(
        "first",
        &format!("ca_file = \"{ca}\"\ntls_first = true"),
        "",
    );
    let (code, text) = check(&dir, &config);
    assert_eq!(code, Some(0), "{text}");
}

#[test]
fn several_seed_urls_reach_the_server_that_answers() {
    let dir = test_dir("tls-seeds");
    let nats = Nats::start(&dir, "seeds", "");
    let dead = free_port();
    let config = write(
        &dir.join("seeds.toml"),
        &format!(
            "[console]\nartifacts = \"{}\"\n\n[nats]\nurl = \"nats://127.0.0.1:{dead}, nats://localhost:{}\"\ntimeout = \"2s\"\n",
            dir.join("artifacts").display(),
            nats.port
        ),
    );
    let (code, text) = check(&dir, &config);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(snapshot(&dir, &config)["nats.up"], 1.0);
}
