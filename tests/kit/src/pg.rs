//! A throw-away PostgreSQL 15 (Debian's server binaries, installed by
//! scripts/setup.sh) on a temporary directory: `initdb` and `postgres` run
//! as the `postgres` system user (the server refuses root), on a free
//! loopback port with its unix socket in the directory, TCP only through
//! `hostssl ... cert` (a client certificate whose CN is the role) when TLS
//! files are given. Stopped (fast shutdown) and removed on drop; `stop` and
//! `resume` make an outage on the same port and data.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_until};

pub const BIN: &str = "/usr/lib/postgresql/15/bin";
pub const DB: &str = "voxtap";

/// The server's certificate and key and the CA its clients' certificates
/// must chain to (PEM files; copied into the server's directory).
pub struct PgTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

pub struct Pg {
    pub root: PathBuf,
    pub port: u16,
    child: Option<Child>,
    /// The network namespace the server runs in (its TCP port is there;
    /// its unix socket, in `root`, reaches it from anywhere).
    netns: Option<String>,
}

fn run(c: &mut Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn as_postgres(prog: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--", &format!("{BIN}/{prog}")]);
    c
}

impl Pg {
    /// A new cluster with database `voxtap`, running. `fast`: no fsync
    /// (tests); the benchmark keeps PostgreSQL's durable defaults.
    pub fn start(tag: &str, tls: Option<&PgTls>, fast: bool) -> Pg {
        Pg::start_in(tag, tls, fast, None)
    }

    /// [`Pg::start`] with the server in network namespace `netns` (a live
    /// sensor of the namespace lab reaches it at 127.0.0.1 there).
    pub fn start_in(tag: &str, tls: Option<&PgTls>, fast: bool, netns: Option<&str>) -> Pg {
        assert!(
            Path::new(BIN).join("postgres").exists(),
            "PostgreSQL 15 is not installed: run scripts/setup.sh"
        );
        let root = std::env::temp_dir().join(format!("voxtap-pg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("sock")).unwrap();
        run(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&root),
            "chown",
        );
        run(
            as_postgres("initdb")
                .args(["-D", root.join("data").to_str().unwrap()])
                .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
                .arg("--no-instructions"),
            "initdb",
        );
        let pg = Pg {
            port: free_port(),
            root,
            child: None,
            netns: netns.map(str::to_string),
        };
        pg.configure(tls, fast);
        let mut pg = pg;
        pg.resume();
        pg.psql("postgres", &format!("CREATE DATABASE {DB}"));
        pg
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("sock")
    }

    fn configure(&self, tls: Option<&PgTls>, fast: bool) {
        let mut conf = format!(
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             shared_buffers = 256MB\nmax_connections = 60\nlog_min_messages = warning\n",
            self.port,
            self.socket_dir().display()
        );
        if fast {
            conf.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        let mut hba = "local all all trust\n".to_string();
        if let Some(t) = tls {
            for (src, name, mode) in [
                (&t.cert, "server.crt", 0o644),
                (&t.key, "server.key", 0o600),
                (&t.ca, "ca.crt", 0o644),
            ] {
                let dst = self.data().join(name);
                std::fs::copy(src, &dst).unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode)).unwrap();
                run(
                    Command::new("chown").args(["postgres:postgres"]).arg(&dst),
                    "chown",
                );
            }
            conf.push_str(
                "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'ca.crt'\n",
            );
            // TCP only with TLS and a client certificate whose CN is the role.
            hba.push_str("hostssl all all 127.0.0.1/32 cert\n");
        }
        let append = |file: &str, text: &str| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(self.data().join(file))
                .unwrap();
            f.write_all(text.as_bytes()).unwrap();
        };
        append("postgresql.conf", &conf);
        std::fs::write(self.data().join("pg_hba.conf"), hba).unwrap();
    }

    /// (Re)starts the server on the same port and data; returns once it
    /// accepts connections.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join("server.log"))
            .unwrap();
        let mut server = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "runuser", "-u", "postgres", "--"])
                    .arg(format!("{BIN}/postgres"));
                c
            }
            None => as_postgres("postgres"),
        };
        let child = server
            .args(["-D", self.data().to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting postgres");
        self.child = Some(child);
        let sock = self.socket_dir();
        let port = self.port.to_string();
        wait_until(
            Duration::from_secs(60),
            "postgres accepting connections",
            || {
                let ok = Command::new(format!("{BIN}/pg_isready"))
                    .args([
                        "-q",
                        "-h",
                        sock.to_str().unwrap(),
                        "-p",
                        &port,
                        "-U",
                        "postgres",
                    ])
                    .status()
                    .is_ok_and(|s| s.success());
                ok.then_some(())
            },
        );
    }

    /// Fast shutdown (clients are disconnected), waiting for the end.
    /// The signal goes to the postmaster itself (the first line of
    /// `postmaster.pid`): runuser does not pass SIGINT on.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let postmaster = std::fs::read_to_string(self.data().join("postmaster.pid"))
                .ok()
                .and_then(|s| s.lines().next()?.trim().parse::<i32>().ok());
            match postmaster {
                // SAFETY: signalling the server this Pg started.
                Some(pid) => unsafe { libc::kill(pid, libc::SIGINT) },
                // Not started far enough to write its pid: end runuser.
                None => unsafe { libc::kill(c.id() as i32, libc::SIGKILL) },
            };
            let _ = c.wait();
        }
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// The superuser over the unix socket (key/value form).
    pub fn admin_url(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname={DB}",
            self.socket_dir().display(),
            self.port
        )
    }

    /// `user` over TCP with TLS; the caller adds `sslcert`/`sslkey`/
    /// `sslrootcert`.
    pub fn tcp_url(&self, user: &str) -> String {
        format!(
            "postgresql://{user}@127.0.0.1:{}/{DB}?sslmode=require",
            self.port
        )
    }

    /// Runs `sql` with psql as the superuser on database `db`; its output
    /// (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(format!("{BIN}/psql"))
            .env("PGCONNECT_TIMEOUT", "10")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", self.socket_dir().to_str().unwrap()])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A number from a query of the voxtap database.
    pub fn count(&self, sql: &str) -> i64 {
        self.psql(DB, sql)
            .parse()
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
