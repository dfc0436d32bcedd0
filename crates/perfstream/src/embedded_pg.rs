//! A throwaway Postgres cluster for `perfstream demo`, started from the installed PostgreSQL
//! binaries in a temporary folder and removed on drop (unless kept).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

pub struct EmbeddedPg {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
    as_postgres: bool,
    keep: bool,
}

fn find_bindir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if p.join("initdb").exists() {
            return Some(p);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

impl EmbeddedPg {
    /// initdb + pg_ctl start on `port` (0: a free one) in a new temporary folder.
    pub fn start(port: u16, keep: bool) -> Result<EmbeddedPg> {
        let bin = find_bindir().context(
            "PostgreSQL server binaries not found (no initdb in `pg_config --bindir` or /usr/lib/postgresql/*/bin): \
             install them with `apt-get install -y postgresql`, or set DATABASE_URL to an existing database",
        )?;
        let port = if port == 0 {
            TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()
        } else {
            if TcpListener::bind(("127.0.0.1", port)).is_err() {
                bail!("port {port} is taken: pass another --pg-port, or 0 for a free one");
            }
            port
        };
        let dir = std::env::temp_dir().join(format!("perfstream-demo-pg-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let as_postgres = is_root();
        if as_postgres {
            // initdb refuses to run as root: the cluster belongs to the postgres user.
            let st = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&dir)
                .status()?;
            if !st.success() {
                bail!(
                    "chown postgres {} failed (is there a `postgres` user?)",
                    dir.display()
                );
            }
        }
        let pg = EmbeddedPg {
            bin,
            dir,
            port,
            as_postgres,
            keep,
        };
        let data = pg.dir.join("data");
        pg.run(
            "initdb",
            &[
                "-D",
                path(&data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )
        .context("initdb of the throwaway cluster")?;
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            pg.port,
            path(&pg.dir)
        );
        let logf = pg.dir.join("postgres.log");
        pg.run(
            "pg_ctl",
            &[
                "-D",
                path(&data),
                "-l",
                path(&logf),
                "-o",
                &opts,
                "-w",
                "start",
            ],
        )
        .with_context(|| format!("starting the throwaway Postgres (log: {})", logf.display()))?;
        pg.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &pg.port.to_string(),
                "-U",
                "postgres",
                "perfstream",
            ],
        )
        .context("createdb perfstream")?;
        Ok(pg)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/perfstream", self.port)
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<()> {
        let exe = self.bin.join(tool);
        let out = if self.as_postgres {
            Command::new("runuser")
                .arg("-u")
                .arg("postgres")
                .arg("--")
                .arg(&exe)
                .args(args)
                .output()
        } else {
            Command::new(&exe).args(args).output()
        }
        .with_context(|| format!("running {}", exe.display()))?;
        if !out.status.success() {
            bail!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

impl Drop for EmbeddedPg {
    fn drop(&mut self) {
        if self.keep {
            eprintln!(
                "Kept the demo database: {} (data in {}; stop with pg_ctl -D {}/data stop)",
                self.url(),
                self.dir.display(),
                self.dir.display()
            );
            return;
        }
        let data = self.dir.join("data");
        let _ = self.run("pg_ctl", &["-D", path(&data), "-m", "fast", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
