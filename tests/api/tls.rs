//! Postgres over TLS: a private Postgres cluster with `ssl = on`, a CA and a server certificate
//! made at test time (rcgen), and mnemo started against it with each `sslmode`.
//!
//! The cluster runs from the installed Postgres binaries (Debian's `/usr/lib/postgresql/*/bin`,
//! or `initdb` on PATH) as the `postgres` user when the test runs as root, on a port of its own,
//! with its data, socket and certificates in one temp dir, stopped and deleted by a guard. Without
//! the binaries the test says so loudly and returns, unless `MNEMO_TEST_REQUIRE_POSTGRES=1`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use mnemo::config::Config;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::helpers::TestApp;

/// The installed Postgres binaries' directory (the newest version), if any.
fn pg_bindir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
    })
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A private Postgres cluster, stopped (`pg_ctl stop -m immediate`) and deleted when dropped.
struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// run the binaries as `postgres` (we are root, and Postgres refuses to run as root)
    as_postgres: bool,
}

impl Cluster {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn cmd(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let out = self
            .cmd(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
            panic!(
                "{program} {args:?} failed ({}):\n{}\nserver log:\n{log}",
                out.status,
                output_text(&out)
            );
        }
        out
    }

    /// A libpq-style connection to this cluster from outside mnemo, without TLS.
    async fn admin(&self, db: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname={db}",
                self.port
            ),
            tokio_postgres::NoTls,
        )
        .await
        .expect("admin connection to the private cluster");
        actix_web::rt::spawn(async move {
            let _ = conn.await;
        });
        client
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        if data.join("postmaster.pid").exists() {
            let stopped = self
                .cmd("pg_ctl")
                .arg("-D")
                .arg(&data)
                .args(["stop", "-m", "immediate", "-w", "-t", "20"])
                .output()
                .is_ok_and(|o| o.status.success());
            if !stopped {
                // pg_ctl could not do it: SIGQUIT to the postmaster is the same immediate stop
                if let Some(pid) = std::fs::read_to_string(data.join("postmaster.pid"))
                    .ok()
                    .and_then(|s| s.lines().next().map(str::to_string))
                {
                    let _ = Command::new("kill").args(["-QUIT", &pid]).status();
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Certs {
    ca: PathBuf,
    wrong_ca: PathBuf,
    server_crt: PathBuf,
    server_key: PathBuf,
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// A CA, a server certificate it signs for `localhost` and 127.0.0.1 (not 127.0.0.2), and a
/// second CA that signed nothing.
fn make_certs(dir: &Path) -> Certs {
    let (ca_pem, issuer) = ca("mnemo test CA");
    let (wrong_pem, _) = ca("mnemo test CA (the wrong one)");
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let certs = Certs {
        ca: dir.join("ca.pem"),
        wrong_ca: dir.join("wrong-ca.pem"),
        server_crt: dir.join("server.crt"),
        server_key: dir.join("server.key"),
    };
    std::fs::write(&certs.ca, ca_pem).unwrap();
    std::fs::write(&certs.wrong_ca, wrong_pem).unwrap();
    std::fs::write(&certs.server_crt, cert.pem()).unwrap();
    std::fs::write(&certs.server_key, key.serialize_pem()).unwrap();
    // Postgres refuses a key file others can read
    std::fs::set_permissions(&certs.server_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    certs
}

fn uid_of(user: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, user]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), uid, gid);
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the private cluster, or returns `None` (said loudly) when Postgres is not installed.
fn start_cluster() -> Option<(Cluster, Certs)> {
    let Some(bin) = pg_bindir() else {
        if std::env::var("MNEMO_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
            panic!(
                "Postgres is required (MNEMO_TEST_REQUIRE_POSTGRES=1) but its server binaries \
                 (initdb, pg_ctl) are not installed"
            );
        }
        eprintln!(
            "\n*** POSTGRES SERVER BINARIES NOT INSTALLED (no initdb): the Postgres-over-TLS test did NOT run ***\n"
        );
        return None;
    };
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let dir = std::env::temp_dir().join(format!("mnemo-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&dir).unwrap();
    let cluster = Cluster {
        dir: dir.clone(),
        bin,
        port: free_port(),
        as_postgres: is_root,
    };
    let certs = make_certs(&dir);
    if is_root {
        let (uid, gid) = uid_of("postgres").expect("running as root needs a `postgres` user");
        chown_tree(&dir, uid, gid);
    }
    let data = cluster.data();
    let data_s = data.to_str().unwrap();
    cluster.run(
        "initdb",
        &[
            "-D",
            data_s,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
    );
    let conf = format!(
        "\nport = {port}\nlisten_addresses = '127.0.0.1,127.0.0.2'\nunix_socket_directories = '{dir}'\n\
         ssl = on\nssl_cert_file = '{crt}'\nssl_key_file = '{key}'\n\
         fsync = off\nmax_connections = 40\nshared_buffers = 16MB\n",
        port = cluster.port,
        dir = dir.display(),
        crt = certs.server_crt.display(),
        key = certs.server_key.display(),
    );
    let mut pg_conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
    pg_conf.push_str(&conf);
    std::fs::write(data.join("postgresql.conf"), pg_conf).unwrap();
    let mut hba = std::fs::read_to_string(data.join("pg_hba.conf")).unwrap();
    hba.push_str("\nhost all all 127.0.0.0/8 trust\n");
    std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
    let log = dir.join("log");
    cluster.run(
        "pg_ctl",
        &[
            "-D",
            data_s,
            "-l",
            log.to_str().unwrap(),
            "-w",
            "-t",
            "60",
            "start",
        ],
    );
    Some((cluster, certs))
}

fn config(url: String) -> Config {
    let mut c = Config::from_env().expect("config");
    c.database_url = url;
    c.host = "127.0.0.1".into();
    c.port = 0;
    c.workers = Some(2);
    c.shutdown_timeout_s = 5;
    c.pool_max = 4;
    c
}

/// How many of mnemo's connections to `db` are encrypted, and how many are not.
async fn mnemo_connections(admin: &tokio_postgres::Client, db: &str) -> (i64, i64) {
    let row = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
             FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid \
             WHERE a.datname = $1 AND a.application_name = 'mnemo'",
            &[&db],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// Starts mnemo on `url` (database `db`), checks `/ready` and whether its connections use TLS.
async fn serves(admin: &tokio_postgres::Client, db: &str, url: String, tls: bool) {
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let app = TestApp::try_start(config(url.clone()))
        .await
        .unwrap_or_else(|e| panic!("mnemo did not start on {url}: {e}"));
    let (status, body) = app.get("/ready").await;
    assert_eq!(status, 200, "{url}: /ready answered {body}");
    let (encrypted, plain) = mnemo_connections(admin, db).await;
    if tls {
        assert!(
            encrypted >= 1 && plain == 0,
            "{url}: expected only TLS connections, Postgres shows {encrypted} encrypted and {plain} plaintext"
        );
    } else {
        assert!(
            plain >= 1 && encrypted == 0,
            "{url}: expected only plaintext connections, Postgres shows {encrypted} encrypted and {plain} plaintext"
        );
    }
    app.stop().await;
}

/// mnemo refuses to start on `url`; returns its error.
async fn refused(admin: &tokio_postgres::Client, db: &str, url: String) -> String {
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    match TestApp::try_start(config(url.clone())).await {
        Ok(app) => {
            app.stop().await;
            panic!("mnemo started on {url}, it should have refused");
        }
        Err(e) => {
            assert!(!e.contains("s3cret"), "the password leaked into: {e}");
            e
        }
    }
}

#[actix_web::test]
async fn postgres_over_tls_honours_sslmode_and_sslrootcert() {
    let t0 = Instant::now();
    let Some((cluster, certs)) = start_cluster() else {
        return;
    };
    let port = cluster.port;
    let admin = cluster.admin("postgres").await;
    let ca = certs.ca.display().to_string();
    let wrong = certs.wrong_ca.display().to_string();
    eprintln!("tls: cluster up in {:?}", t0.elapsed());

    // require: TLS, no certificate check (the server's CA is unknown to mnemo)
    serves(
        &admin,
        "tls_require",
        format!("postgres://postgres:s3cret@127.0.0.1:{port}/tls_require?sslmode=require"),
        true,
    )
    .await;

    // verify-full with the right CA (its path percent-encoded) and the name the certificate has
    serves(
        &admin,
        "tls_full",
        format!(
            "postgres://postgres@localhost:{port}/tls_full?application_name=x&sslmode=verify-full&sslrootcert={}",
            ca.replace('/', "%2F")
        ),
        true,
    )
    .await;

    // verify-full against the IP address the certificate also names
    serves(
        &admin,
        "tls_full_ip",
        format!(
            "postgres://postgres@127.0.0.1:{port}/tls_full_ip?sslmode=verify-full&sslrootcert={ca}"
        ),
        true,
    )
    .await;

    // verify-full with a CA that did not sign the server's certificate: refused at start-up
    let e = refused(
        &admin,
        "tls_wrong_ca",
        format!(
            "postgres://postgres:s3cret@localhost:{port}/tls_wrong_ca?sslmode=verify-full&sslrootcert={wrong}"
        ),
    )
    .await;
    assert!(
        e.contains("TLS to Postgres at localhost:")
            && e.contains(&format!(
                "the server's certificate is not signed by the CA in sslrootcert ({wrong})"
            )),
        "unclear error: {e}"
    );
    eprintln!("tls: wrong CA refused with: {e}");

    // require with sslrootcert checks the chain too, as libpq does
    let e = refused(
        &admin,
        "tls_require_wrong_ca",
        format!("postgres://postgres@127.0.0.1:{port}/tls_require_wrong_ca?sslmode=require&sslrootcert={wrong}"),
    )
    .await;
    assert!(e.contains("not signed by the CA in sslrootcert"), "{e}");

    // 127.0.0.2 is not in the certificate: verify-full refuses, verify-ca only checks the chain
    let e = refused(
        &admin,
        "tls_full_wrong_name",
        format!("postgres://postgres@127.0.0.2:{port}/tls_full_wrong_name?sslmode=verify-full&sslrootcert={ca}"),
    )
    .await;
    assert!(
        e.contains("not valid for the host name 127.0.0.2"),
        "unclear error: {e}"
    );
    eprintln!("tls: wrong host name refused with: {e}");
    serves(
        &admin,
        "tls_ca_only",
        format!(
            "postgres://postgres@127.0.0.2:{port}/tls_ca_only?sslmode=verify-ca&sslrootcert={ca}"
        ),
        true,
    )
    .await;

    // no sslmode is prefer: TLS when the server offers it
    serves(
        &admin,
        "tls_prefer",
        format!("postgres://postgres@127.0.0.1:{port}/tls_prefer"),
        true,
    )
    .await;

    // prefer whose handshake fails (sslrootcert names the wrong CA): plaintext, as libpq does
    serves(
        &admin,
        "tls_prefer_wrong_ca",
        format!("postgres://postgres@127.0.0.1:{port}/tls_prefer_wrong_ca?sslmode=prefer&sslrootcert={wrong}"),
        false,
    )
    .await;

    // disable: plaintext even though the server offers TLS
    serves(
        &admin,
        "tls_disable",
        format!("postgres://postgres@127.0.0.1:{port}/tls_disable?sslmode=disable"),
        false,
    )
    .await;

    // a server without TLS: prefer falls back to plaintext, require refuses
    admin
        .batch_execute("ALTER SYSTEM SET ssl = off")
        .await
        .unwrap();
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ssl: String = cluster
            .admin("postgres")
            .await
            .query_one("SHOW ssl", &[])
            .await
            .unwrap()
            .get(0);
        if ssl == "off" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ssl is still {ssl} after the reload"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    serves(
        &admin,
        "plain_prefer",
        format!("postgres://postgres@127.0.0.1:{port}/plain_prefer?sslmode=prefer"),
        false,
    )
    .await;
    let e = refused(
        &admin,
        "plain_require",
        format!("postgres://postgres@127.0.0.1:{port}/plain_require?sslmode=require"),
    )
    .await;
    assert!(
        e.contains("server does not support TLS"),
        "unclear error: {e}"
    );
    eprintln!("tls: require without server TLS refused with: {e}");

    drop(admin);
    drop(cluster);
    eprintln!("tls: done in {:?}", t0.elapsed());
}
