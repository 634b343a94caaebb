//! Real cache servers on loopback for tests (feature `test-servers`): nginx with WebDAV
//! `PUT` (also over TLS, with a certificate `openssl` makes at start), redis-server, moto's S3
//! server and ducktors' turborepo-remote-cache; and a fake HTTP server that errs or stalls
//! ([`fake_http_server`]).
//!
//! In: nothing but the server binaries on `PATH`. Out: a [`TestServer`] listening on
//! `127.0.0.1` at a free port, with its data in a temp directory, the remote cache URL
//! ([`TestServer::url`]) and the environment a client needs ([`TestServer::env`]); it is
//! stopped (killed) by [`TestServer::stop`] or when dropped. A missing binary is an error whose
//! text says how to install it (`nginx not found: apt-get install -y nginx`), so a test that
//! `expect`s the server fails rather than skips. `.ci/run` installs all four, and `openssl`.
//!
//! Built to be compiled into other test crates (the clab binary's end-to-end tests): depend
//! on `clab-remote` with `features = ["test-servers"]`.

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The kinds of server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// nginx with `dav_methods PUT`: the Bazel HTTP layout under `/cache`.
    Nginx,
    /// The same nginx over TLS, with a certificate for 127.0.0.1 from a CA made for it
    /// (`openssl`); [`TestServer::env`] points `SSL_CERT_FILE` at the CA.
    NginxTls,
    /// redis-server without persistence.
    Redis,
    /// moto's S3 server, with a bucket `clab`.
    Moto,
    /// turborepo-remote-cache with local storage.
    Turbo,
}

impl ServerKind {
    /// The binary that runs it.
    pub fn binary(self) -> &'static str {
        match self {
            ServerKind::Nginx | ServerKind::NginxTls => "nginx",
            ServerKind::Redis => "redis-server",
            ServerKind::Moto => "moto_server",
            ServerKind::Turbo => "turborepo-remote-cache",
        }
    }

    /// How to install it on Debian.
    pub fn install_hint(self) -> &'static str {
        match self {
            ServerKind::Nginx | ServerKind::NginxTls => "apt-get install -y nginx",
            ServerKind::Redis => "apt-get install -y redis-server",
            ServerKind::Moto => "python3 -m pip install 'moto[server]'",
            ServerKind::Turbo => "npm i -g turborepo-remote-cache",
        }
    }
}

/// A server could not be started or asked.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Its binary is not on `PATH`.
    #[error("{binary} not found: {hint}")]
    NotInstalled {
        /// The binary.
        binary: &'static str,
        /// The install command.
        hint: &'static str,
    },
    /// It exited or did not listen in time.
    #[error("{binary} did not start: {detail}\n--- its log ---\n{log}")]
    Start {
        /// The binary.
        binary: &'static str,
        /// What happened.
        detail: String,
        /// Its output.
        log: String,
    },
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What we tried.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server answered something unexpected.
    #[error("{0}")]
    Protocol(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io { what, source }
}

/// The bucket moto's server is given.
pub const MOTO_BUCKET: &str = "clab";

/// The bearer token turborepo-remote-cache is started with.
pub const TURBO_TOKEN: &str = "clab-test-turbo-token";

/// The team turborepo-remote-cache stores under.
pub const TURBO_TEAM: &str = "clab-test-team";

/// A running server (killed on drop).
pub struct TestServer {
    kind: ServerKind,
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    env: Vec<(String, String)>,
}

impl fmt::Debug for TestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServer")
            .field("kind", &self.kind)
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .finish()
    }
}

/// A server on a thread that accepts connections on 127.0.0.1 and answers each request with
/// `reply` (or never, for `None`), keeping every connection open; returns its port. For a
/// server that errs, stalls, or stops halfway through a body.
pub fn fake_http_server(reply: Option<&'static str>) -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("a bound address").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(64) {
            let Ok(mut stream) = stream else { break };
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            if let Some(reply) = reply {
                let _ = stream.write_all(reply.as_bytes());
            }
            held.push(stream);
        }
    });
    port
}

/// Where `binary` is on `PATH`, or in an `sbin` directory (nginx lives in `/usr/sbin`, which
/// is not on every user's `PATH`).
pub fn find_binary(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(binary))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16, ServerError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("bind a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(io("read a bound port"))?
        .port())
}

impl TestServer {
    /// nginx serving `/cache/` with WebDAV `PUT` (`dav_methods PUT; create_full_put_path
    /// on;`), one process (`master_process off`, so killing it stops it), data in
    /// `<dir>/data/cache/`.
    pub fn nginx() -> Result<TestServer, ServerError> {
        TestServer::start(ServerKind::Nginx, None, false)
    }

    /// nginx as [`nginx`](Self::nginx) that answers 401 to any request without
    /// `Authorization: Bearer <token>`; [`env`](Self::env) gives the client the token
    /// (`CLAB_REMOTE_CACHE_TOKEN`).
    pub fn nginx_with_token(token: &str) -> Result<TestServer, ServerError> {
        TestServer::start(ServerKind::Nginx, Some(token), false)
    }

    /// nginx as [`nginx`](Self::nginx), over TLS (`https://`); needs `openssl` to make its CA
    /// and certificate.
    pub fn nginx_tls() -> Result<TestServer, ServerError> {
        TestServer::start(ServerKind::NginxTls, None, false)
    }

    /// redis-server with `--save '' --appendonly no`.
    pub fn redis() -> Result<TestServer, ServerError> {
        TestServer::start(ServerKind::Redis, None, false)
    }

    /// redis-server as [`redis`](Self::redis) with `--requirepass password`;
    /// [`env`](Self::env) gives the client the password (`REDIS_PASSWORD`).
    pub fn redis_with_password(password: &str) -> Result<TestServer, ServerError> {
        TestServer::start(ServerKind::Redis, Some(password), false)
    }

    /// moto's S3 server with the bucket [`MOTO_BUCKET`]; [`env`](Self::env) holds test
    /// `AWS_*` credentials (moto accepts any).
    pub fn moto() -> Result<TestServer, ServerError> {
        let server = TestServer::start(ServerKind::Moto, None, false)?;
        let (status, _) = server.http("PUT", &format!("/{MOTO_BUCKET}"))?;
        if status != 200 {
            return Err(ServerError::Protocol(format!(
                "moto answered {status} when creating the bucket"
            )));
        }
        Ok(server)
    }

    /// turborepo-remote-cache with local storage in `<dir>/data`, token [`TURBO_TOKEN`]; with
    /// `signature_key`, the server keeps artifact tags (and requires them on reads), and
    /// [`env`](Self::env) gives the client the same key.
    pub fn turbo(signature_key: Option<&str>) -> Result<TestServer, ServerError> {
        TestServer::start(ServerKind::Turbo, signature_key, false)
    }

    /// turborepo-remote-cache with `READ_ONLY=true`: it answers 403 to every upload.
    pub fn turbo_read_only() -> Result<TestServer, ServerError> {
        TestServer::start(ServerKind::Turbo, None, true)
    }

    /// Starts a server of `kind`; `secret` is nginx's bearer token, Redis's password or the
    /// Turborepo cache's signature key.
    fn start(
        kind: ServerKind,
        secret: Option<&str>,
        read_only: bool,
    ) -> Result<TestServer, ServerError> {
        let binary = find_binary(kind.binary()).ok_or(ServerError::NotInstalled {
            binary: kind.binary(),
            hint: kind.install_hint(),
        })?;
        // A port found free can be taken before the server binds it: try a few.
        let mut last = None;
        for _ in 0..3 {
            match TestServer::start_once(kind, &binary, secret, read_only) {
                Ok(server) => return Ok(server),
                Err(e @ ServerError::Start { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| ServerError::Protocol("no attempt made".into())))
    }

    fn start_once(
        kind: ServerKind,
        binary: &Path,
        secret: Option<&str>,
        read_only: bool,
    ) -> Result<TestServer, ServerError> {
        let dir = tempfile::Builder::new()
            .prefix("clab-test-server-")
            .tempdir()
            .map_err(io("create a temp directory"))?;
        let root = dir.path().to_owned();
        let data = root.join("data");
        fs::create_dir_all(&data).map_err(io("create the data directory"))?;
        // nginx's workers may run as another user when started as root.
        for path in [&root, &data] {
            fs::set_permissions(path, fs::Permissions::from_mode(0o777))
                .map_err(io("open up the server directory"))?;
        }
        let port = free_port()?;
        let log_path = root.join("server.log");
        let log = fs::File::create(&log_path).map_err(io("create the server log"))?;
        let log_err = log.try_clone().map_err(io("clone the server log"))?;
        let mut command = Command::new(binary);
        let mut env = Vec::new();
        match kind {
            ServerKind::Nginx | ServerKind::NginxTls => {
                let tls = kind == ServerKind::NginxTls;
                if tls {
                    make_certificates(&root)?;
                    let ca = root.join("ca.pem").display().to_string();
                    env = vec![("SSL_CERT_FILE".to_owned(), ca)];
                }
                if let Some(token) = secret {
                    env.push(("CLAB_REMOTE_CACHE_TOKEN".to_owned(), token.to_owned()));
                }
                let conf = root.join("nginx.conf");
                fs::write(&conf, nginx_conf(&root, port, tls, secret))
                    .map_err(io("write nginx.conf"))?;
                command
                    .arg("-p")
                    .arg(&root)
                    .arg("-c")
                    .arg(&conf)
                    .arg("-e")
                    .arg(root.join("error.log"))
                    .arg("-g")
                    .arg("daemon off;");
            }
            ServerKind::Redis => {
                command
                    .arg("--port")
                    .arg(port.to_string())
                    .arg("--bind")
                    .arg("127.0.0.1")
                    .arg("--save")
                    .arg("")
                    .arg("--appendonly")
                    .arg("no")
                    .arg("--dir")
                    .arg(&data)
                    .arg("--daemonize")
                    .arg("no");
                if let Some(password) = secret {
                    command.arg("--requirepass").arg(password);
                    env.push(("REDIS_PASSWORD".to_owned(), password.to_owned()));
                }
            }
            ServerKind::Moto => {
                command
                    .arg("-H")
                    .arg("127.0.0.1")
                    .arg("-p")
                    .arg(port.to_string());
                env = vec![
                    (
                        "AWS_ACCESS_KEY_ID".to_owned(),
                        "clab-test-access-key".to_owned(),
                    ),
                    (
                        "AWS_SECRET_ACCESS_KEY".to_owned(),
                        "clab-test-secret-access-key".to_owned(),
                    ),
                    ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
                ];
            }
            ServerKind::Turbo => {
                command
                    .env("NODE_ENV", "production")
                    .env("HOST", "127.0.0.1")
                    .env("PORT", port.to_string())
                    .env("STORAGE_PROVIDER", "local")
                    .env("STORAGE_PATH", &data)
                    .env("STORAGE_PATH_USE_TMP_FOLDER", "false")
                    .env("TURBO_TOKEN", TURBO_TOKEN)
                    .env("LOG_LEVEL", "warn")
                    .env("READ_ONLY", if read_only { "true" } else { "false" })
                    .env_remove("TURBO_REMOTE_CACHE_SIGNATURE_KEY");
                env = vec![
                    ("TURBO_TOKEN".to_owned(), TURBO_TOKEN.to_owned()),
                    ("TURBO_TEAM".to_owned(), TURBO_TEAM.to_owned()),
                ];
                if let Some(key) = secret {
                    command.env("TURBO_REMOTE_CACHE_SIGNATURE_KEY", key);
                    env.push((
                        "TURBO_REMOTE_CACHE_SIGNATURE_KEY".to_owned(),
                        key.to_owned(),
                    ));
                }
            }
        }
        let child = command
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(io(format!("run {}", kind.binary())))?;
        let mut server = TestServer {
            kind,
            child: Some(child),
            dir,
            port,
            env,
        };
        server.wait_until_listening(Duration::from_secs(30))?;
        Ok(server)
    }

    fn wait_until_listening(&mut self, limit: Duration) -> Result<(), ServerError> {
        let started = Instant::now();
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(self.start_error(format!("it exited with {status}")));
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if started.elapsed() > limit {
                self.stop();
                return Err(self.start_error(format!(
                    "nothing listened on port {} within {} s",
                    self.port,
                    limit.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn start_error(&self, detail: String) -> ServerError {
        let mut log = fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        if let Ok(error_log) = fs::read_to_string(self.dir.path().join("error.log")) {
            log.push_str(&error_log);
        }
        ServerError::Start {
            binary: self.kind.binary(),
            detail,
            log,
        }
    }

    /// Which server this is.
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The remote cache URL that reaches it (`CLAB_REMOTE_CACHE`).
    pub fn url(&self) -> String {
        let port = self.port;
        match self.kind {
            ServerKind::Nginx => format!("http://127.0.0.1:{port}/cache"),
            ServerKind::NginxTls => format!("https://127.0.0.1:{port}/cache"),
            ServerKind::Redis => format!("redis://127.0.0.1:{port}/0"),
            ServerKind::Moto => format!(
                "s3://{MOTO_BUCKET}/cache?endpoint=http://127.0.0.1:{port}&region=us-east-1"
            ),
            ServerKind::Turbo => format!("turbo+http://127.0.0.1:{port}"),
        }
    }

    /// The environment a client needs (credentials, team), as `(name, value)` pairs.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Where the server keeps objects on disk (nginx, turbo), if it does.
    pub fn data_dir(&self) -> Option<PathBuf> {
        match self.kind {
            ServerKind::Nginx | ServerKind::NginxTls | ServerKind::Turbo => {
                Some(self.dir.path().join("data"))
            }
            ServerKind::Redis | ServerKind::Moto => None,
        }
    }

    /// How many objects the server holds, asked the server's own way (files under the data
    /// directory, `DBSIZE`, the bucket's listing).
    pub fn object_count(&self) -> Result<usize, ServerError> {
        match self.kind {
            ServerKind::Nginx | ServerKind::NginxTls | ServerKind::Turbo => {
                let data = self.dir.path().join("data");
                Ok(count_files(&data))
            }
            ServerKind::Redis => {
                let reply = self.redis_command(&["DBSIZE"])?;
                reply
                    .trim()
                    .strip_prefix(':')
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| ServerError::Protocol(format!("DBSIZE answered {reply:?}")))
            }
            ServerKind::Moto => {
                let (status, body) = self.http("GET", &format!("/{MOTO_BUCKET}?list-type=2"))?;
                if status != 200 {
                    return Err(ServerError::Protocol(format!("listing answered {status}")));
                }
                Ok(body.matches("<Key>").count())
            }
        }
    }

    /// Kills the server and waits for it (idempotent): a stopped server for outage tests.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server's process (`SIGSTOP`) without closing its socket: connections are
    /// still accepted by the kernel, and nothing answers — a server that stalls.
    pub fn pause(&self) -> Result<(), ServerError> {
        self.signal("-STOP")
    }

    /// Lets a [`pause`](Self::pause)d server go on (`SIGCONT`).
    pub fn resume(&self) -> Result<(), ServerError> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> Result<(), ServerError> {
        let Some(child) = &self.child else {
            return Err(ServerError::Protocol("the server is stopped".into()));
        };
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .map_err(io("run kill"))?;
        if status.success() {
            Ok(())
        } else {
            Err(ServerError::Protocol(format!("kill {signal} failed")))
        }
    }

    /// One plain HTTP/1.1 request to the server; returns the status and the body.
    pub fn http(&self, method: &str, path: &str) -> Result<(u16, String), ServerError> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
            .map_err(io("connect to the server"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(io("set a read timeout"))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .map_err(io("send a request"))?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .map_err(io("read a response"))?;
        let response = String::from_utf8_lossy(&response).into_owned();
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                ServerError::Protocol(format!("not an HTTP response: {response:.200}"))
            })?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// A Redis command's reply (after `AUTH`, for a server with a password).
    fn redis_command(&self, args: &[&str]) -> Result<String, ServerError> {
        let mut stream =
            TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).map_err(io("connect to redis"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(io("set a read timeout"))?;
        if let Some((_, password)) = self.env.iter().find(|(name, _)| name == "REDIS_PASSWORD") {
            let reply = redis_call(&mut stream, &["AUTH", password])?;
            if !reply.starts_with("+OK") {
                return Err(ServerError::Protocol(format!("AUTH answered {reply:?}")));
            }
        }
        redis_call(&mut stream, args)
    }
}

/// Sends one Redis command on `stream` and reads its reply (one read of up to 256 bytes).
fn redis_call(stream: &mut TcpStream, args: &[&str]) -> Result<String, ServerError> {
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream
        .write_all(request.as_bytes())
        .map_err(io("send a redis command"))?;
    let mut reply = [0u8; 256];
    let n = stream.read(&mut reply).map_err(io("read a redis reply"))?;
    Ok(String::from_utf8_lossy(&reply[..n]).into_owned())
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => count_files(&entry.path()),
            Ok(t) if t.is_file() => 1,
            _ => 0,
        })
        .sum()
}

fn nginx_conf(root: &Path, port: u16, tls: bool, token: Option<&str>) -> String {
    let root = root.display();
    let listen = if tls {
        format!(
            "listen 127.0.0.1:{port} ssl;
        ssl_certificate {root}/server.pem;
        ssl_certificate_key {root}/server.key;"
        )
    } else {
        format!("listen 127.0.0.1:{port};")
    };
    let token_check = token
        .map(|token| format!("if ($http_authorization != \"Bearer {token}\") {{ return 401; }}"))
        .unwrap_or_default();
    format!(
        "master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        {listen}
        client_max_body_size 0;
        location /cache/ {{
            {token_check}
            root {root}/data;
            dav_methods PUT;
            create_full_put_path on;
            dav_access user:rw group:rw all:r;
        }}
    }}
}}
"
    )
}

/// A CA (`ca.pem`) and a certificate for 127.0.0.1 signed by it (`server.pem`, `server.key`)
/// in `root`, made by `openssl` (P-256 keys, valid for two days).
fn make_certificates(root: &Path) -> Result<(), ServerError> {
    let openssl = find_binary("openssl").ok_or(ServerError::NotInstalled {
        binary: "openssl",
        hint: "apt-get install -y openssl",
    })?;
    fs::write(root.join("san.cnf"), "subjectAltName=IP:127.0.0.1\n")
        .map_err(io("write san.cnf"))?;
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let steps: [&[&str]; 3] = [
        &[
            &["req", "-x509"],
            &key[..],
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
        &[
            &["req"],
            &key[..],
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat(),
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-extfile",
            "san.cnf",
        ],
    ];
    let subjects = [Some("/CN=clab test CA"), Some("/CN=127.0.0.1"), None];
    for (args, subject) in steps.iter().zip(subjects) {
        let mut command = Command::new(&openssl);
        command.args(*args).args(["-days", "2"]).current_dir(root);
        if let Some(subject) = subject {
            command.args(["-subj", subject]);
        }
        let output = command.output().map_err(io("run openssl"))?;
        if !output.status.success() {
            return Err(ServerError::Protocol(format!(
                "openssl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
    }
    Ok(())
}
