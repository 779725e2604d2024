//! The container files: the compose stack (`docker-compose/`) and the image (`Dockerfile`). The
//! Gatehouse configs they ship are ones the real binary accepts (`gatehouse check`) and serves
//! (the stack's health check passes, `/metrics` answers where Prometheus scrapes), and
//! docker-compose.yml keeps its essentials: Gatehouse waits for a healthy PostgreSQL, secrets come
//! from `docker-compose/.env` (never from a committed file), every service has a health check,
//! Prometheus mounts `deploy/prometheus/alerts.yml`, Grafana is provisioned from `deploy/grafana`.
//!
//! How to run: `cargo test --test it compose::` (no Docker needed). `scripts/validate-compose` lints
//! the same files with hadolint and `docker compose config`.

use crate::common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use serde_yaml_ng::{Mapping, Value};

use common::binary::{check, free_addr, Gatehouse, TempDir, GATEHOUSE};
use common::files::{repo, yaml_text};

const COMPOSE_DIR: &str = "docker-compose";
const COMPOSE_FILE: &str = "docker-compose/docker-compose.yml";
const ENV_EXAMPLE: &str = "docker-compose/.env.example";
const BACKEND_BINARY: &str = "gatehouse-backend";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn yaml(path: &Path) -> Value {
    let mut value: Value = serde_yaml_ng::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    // Compose applies YAML merge keys (`<<: *anchor`); so must the reader.
    value.apply_merge().expect("merge keys");
    value
}

fn compose() -> Value {
    yaml(&repo(COMPOSE_FILE))
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    let service = &compose["services"][name];
    assert!(service.is_mapping(), "{COMPOSE_FILE} has no service {name}");
    service
}

fn services(compose: &Value) -> impl Iterator<Item = (&str, &Value)> {
    compose["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .map(|(name, service)| (yaml_text(name), service))
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("expected a list, got {value:?}"))
        .iter()
        .map(yaml_text)
        .collect()
}

fn environment<'a>(service: &'a Value, name: &str) -> &'a str {
    yaml_text(&service["environment"][name])
}

/// A short-syntax volume: `SOURCE:TARGET[:MODE]`.
struct Mount {
    source: String,
    target: String,
    read_only: bool,
}

impl Mount {
    /// A bind mount of a file or directory of the repository (not a named volume).
    fn is_bind(&self) -> bool {
        self.source.starts_with('.') || self.source.starts_with('/')
    }

    /// The host path, relative to the compose file's directory as compose resolves it.
    fn host_path(&self) -> PathBuf {
        repo(COMPOSE_DIR).join(&self.source)
    }
}

fn mounts(service: &Value) -> Vec<Mount> {
    service["volumes"]
        .as_sequence()
        .map_or(&[][..], |s| s.as_slice())
        .iter()
        .map(|volume| {
            let parts: Vec<&str> = yaml_text(volume).split(':').collect();
            assert!(
                (2..=3).contains(&parts.len()),
                "volume `{}`: use SOURCE:TARGET[:ro]",
                yaml_text(volume)
            );
            Mount {
                source: parts[0].to_owned(),
                target: parts[1].to_owned(),
                read_only: parts.get(2) == Some(&"ro"),
            }
        })
        .collect()
}

fn mount_at<'a>(mounts: &'a [Mount], target: &str) -> &'a Mount {
    mounts
        .iter()
        .find(|m| m.target == target)
        .unwrap_or_else(|| panic!("nothing is mounted at {target}"))
}

/// The argument after `flag` in an exec-form command.
fn arg_after<'a>(args: &[&'a str], flag: &str) -> &'a str {
    let at = args
        .iter()
        .position(|a| *a == flag)
        .unwrap_or_else(|| panic!("{args:?} has no {flag}"));
    args.get(at + 1)
        .unwrap_or_else(|| panic!("{args:?}: {flag} has no value"))
}

fn port_of(addr: &str) -> u16 {
    let port = addr.rsplit(':').next().expect("host:port");
    port.parse()
        .unwrap_or_else(|_| panic!("`{addr}` has no port"))
}

/// `http://HOST:PORT[/…]` → (HOST, PORT).
fn host_port(url: &str) -> (&str, u16) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("`{url}` is not http://"));
    let authority = rest.split('/').next().expect("authority");
    let (host, _) = authority
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("`{url}` has no port"));
    (host, port_of(authority))
}

/// Container ports a service publishes (`[HOST_IP:]HOST_PORT:CONTAINER_PORT`).
fn published_container_ports(service: &Value) -> Vec<u16> {
    strings(&service["ports"])
        .into_iter()
        .map(port_of)
        .collect()
}

/// The `--config` path of the gatehouse service and the repository file mounted there.
fn mounted_config(compose: &Value) -> (String, PathBuf) {
    let gatehouse = service(compose, "gatehouse");
    let config = arg_after(&strings(&gatehouse["command"]), "--config").to_owned();
    let mounts = mounts(gatehouse);
    let mount = mount_at(&mounts, &config);
    assert!(
        mount.is_bind() && mount.read_only,
        "{config} must be a read-only bind mount"
    );
    (config, mount.host_path())
}

fn compose_gatehouse_config() -> Value {
    yaml(&mounted_config(&compose()).1)
}

fn assert_check_passes(what: &str, path: &Path) {
    let output = check(path);
    assert!(
        output.status.success(),
        "gatehouse check rejects {what} ({}):\n{}{}",
        path.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

/// Services running the test backend, by name, with the port of their `--listen`.
fn backend_services(compose: &Value) -> Vec<(String, u16)> {
    services(compose)
        .filter_map(|(name, service)| {
            let entrypoint = service["entrypoint"].as_sequence()?;
            let args: Vec<&str> = entrypoint.iter().map(yaml_text).collect();
            (args.first() == Some(&BACKEND_BINARY))
                .then(|| (name.to_owned(), port_of(arg_after(&args, "--listen"))))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The Gatehouse config of the stack

#[test]
fn mounted_config_passes_gatehouse_check() {
    let (_, path) = mounted_config(&compose());
    assert_check_passes("the config docker-compose.yml mounts", &path);
}

#[test]
fn mounted_config_listens_where_the_stack_expects() {
    let compose = compose();
    let config = compose_gatehouse_config();
    let gatehouse = service(&compose, "gatehouse");

    let listen = yaml_text(&config["listen"]);
    assert!(
        listen.starts_with("0.0.0.0:"),
        "listen `{listen}` must bind all interfaces in a container"
    );
    let admin = yaml_text(&config["admin_listen"]);
    assert!(
        admin.starts_with("0.0.0.0:"),
        "admin_listen `{admin}` must bind all interfaces in a container"
    );

    let published = published_container_ports(gatehouse);
    for port in [port_of(listen), port_of(admin)] {
        assert!(
            published.contains(&port),
            "gatehouse does not publish container port {port}: {published:?}"
        );
    }

    // The health check probes `listen` (where /health is served with or without admin_listen).
    let probe = strings(&gatehouse["healthcheck"]["test"]);
    assert_eq!(probe[..3], ["CMD", "gatehouse", "probe"], "{probe:?}");
    assert_eq!(
        host_port(probe[3]),
        ("127.0.0.1", port_of(listen)),
        "{probe:?}"
    );
}

#[test]
fn mounted_config_has_the_demo_services_on_the_backend_containers() {
    let compose = compose();
    let config = compose_gatehouse_config();
    let demo = yaml(&repo("config/demo.yaml"));
    let backends: Vec<(String, u16)> = backend_services(&compose);

    let names = |c: &Value| -> Vec<String> {
        c["services"]
            .as_sequence()
            .expect("services")
            .iter()
            .map(|s| yaml_text(&s["name"]).to_owned())
            .collect()
    };
    assert_eq!(
        names(&config),
        names(&demo),
        "the stack serves the services of config/demo.yaml"
    );

    let mut used = BTreeSet::new();
    for (ours, theirs) in config["services"]
        .as_sequence()
        .unwrap()
        .iter()
        .zip(demo["services"].as_sequence().unwrap())
    {
        let name = yaml_text(&ours["name"]);
        for key in ["hosts", "strategy", "auth"] {
            assert_eq!(
                ours[key], theirs[key],
                "service {name}: `{key}` differs from config/demo.yaml"
            );
        }
        let urls = |s: &Value| -> Vec<String> {
            s["backends"]
                .as_sequence()
                .expect("backends")
                .iter()
                .map(|b| yaml_text(&b["url"]).to_owned())
                .collect()
        };
        let (ours_urls, demo_urls) = (urls(ours), urls(theirs));
        assert_eq!(
            ours_urls.len(),
            demo_urls.len(),
            "service {name}: backend count differs from config/demo.yaml"
        );
        for (url, demo_url) in ours_urls.iter().zip(&demo_urls) {
            let (host, port) = host_port(url);
            assert_eq!(
                port,
                host_port(demo_url).1,
                "service {name}: {url} is not the demo's {demo_url}"
            );
            assert!(
                backends.contains(&(host.to_owned(), port)),
                "service {name}: {url} is not a {BACKEND_BINARY} service of {COMPOSE_FILE} listening on {port}: {backends:?}"
            );
            used.insert(host.to_owned());
        }
    }
    let defined: BTreeSet<String> = backends.into_iter().map(|(name, _)| name).collect();
    assert_eq!(
        used, defined,
        "every backend container serves a pool, and only those run"
    );
}

#[test]
fn mounted_config_uses_the_postgres_service() {
    let compose = compose();
    let config = compose_gatehouse_config();
    let url = yaml_text(&config["database"]["url"]);
    let user_info = url
        .strip_prefix("postgres://")
        .and_then(|rest| rest.split_once("@postgres:5432/"))
        .map(|(user_info, _)| user_info)
        .unwrap_or_else(|| panic!("database.url `{url}` must name the postgres service"));
    assert!(
        !user_info.contains(':'),
        "database.url `{url}` must carry no password"
    );

    let env = environment(service(&compose, "gatehouse"), "DATABASE_URL");
    let postgres = service(&compose, "postgres");
    let user = environment(postgres, "POSTGRES_USER");
    let db = environment(postgres, "POSTGRES_DB");
    assert_eq!(
        env,
        format!("postgres://{user}:${{POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in docker-compose/.env}}@postgres:5432/{db}"),
        "DATABASE_URL must name the postgres service's user and database, with the password of docker-compose/.env"
    );
    assert_eq!(
        environment(postgres, "POSTGRES_PASSWORD"),
        "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in docker-compose/.env}"
    );
}

/// The real binary serves the stack's config: the compose health check passes, and `/metrics`
/// answers on admin_listen (where Prometheus scrapes) and not on `listen`. The listeners are moved
/// to loopback ports and the store to SQLite (`Gatehouse::start` sets `DATABASE_URL`); the
/// backend containers do not exist here, which the control plane does not need.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_config_passes_the_compose_health_check() {
    let compose = compose();
    let config = compose_gatehouse_config();
    let admin_used = Mutex::new(None);
    let gatehouse = Gatehouse::start(&["serve"], |listen| {
        let admin = free_addr();
        *admin_used.lock().unwrap() = Some(admin);
        let mut moved = config.clone();
        moved["listen"] = Value::String(listen.to_string());
        moved["admin_listen"] = Value::String(admin.to_string());
        serde_yaml_ng::to_string(&moved).expect("config as YAML")
    })
    .await;
    let admin: SocketAddr = admin_used.lock().unwrap().expect("admin address");

    let probe = strings(&service(&compose, "gatehouse")["healthcheck"]["test"]);
    let container = format!("127.0.0.1:{}", port_of(yaml_text(&config["listen"])));
    let url = probe[3].replace(&container, &gatehouse.addr.to_string());
    assert_ne!(url, probe[3], "the health check probes {container}");
    let healthy = run_probe(&url);
    assert!(
        healthy.status.success(),
        "compose health check failed: {}\n{}",
        describe(&healthy),
        gatehouse.logs()
    );

    let metrics = run_probe(&format!("http://{admin}/metrics"));
    assert!(
        metrics.status.success(),
        "/metrics on admin_listen: {}",
        describe(&metrics)
    );
    let on_listen = run_probe(&format!("http://{}/metrics", gatehouse.addr));
    assert!(
        !on_listen.status.success(),
        "/metrics must be served only on admin_listen: {}",
        describe(&on_listen)
    );
}

fn run_probe(url: &str) -> Output {
    Command::new(GATEHOUSE)
        .args(["probe", url])
        .output()
        .expect("run gatehouse probe")
}

fn describe(output: &Output) -> String {
    format!(
        "{}: {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

// ---------------------------------------------------------------------------------------------
// docker-compose.yml

#[test]
fn gatehouse_waits_for_a_healthy_postgres() {
    let compose = compose();
    let gatehouse = service(&compose, "gatehouse");
    assert_eq!(
        yaml_text(&gatehouse["depends_on"]["postgres"]["condition"]),
        "service_healthy",
        "gatehouse opens the store at start: it must wait for pg_isready"
    );
    for (name, _) in backend_services(&compose) {
        assert_eq!(
            yaml_text(&gatehouse["depends_on"][name.as_str()]["condition"]),
            "service_healthy",
            "{name}"
        );
    }

    let postgres = service(&compose, "postgres");
    let test = strings(&postgres["healthcheck"]["test"]);
    assert!(
        test.contains(&"pg_isready"),
        "postgres health check: {test:?}"
    );
    // Over TCP, so the socket-only server of first-start initialisation does not count as ready.
    assert_eq!(arg_after(&test, "-h"), "127.0.0.1", "{test:?}");

    let data = mount_at(&mounts(postgres), "/var/lib/postgresql/data")
        .source
        .clone();
    assert!(
        compose["volumes"]
            .as_mapping()
            .expect("volumes")
            .contains_key(data.as_str()),
        "postgres data must be a named volume, not `{data}`"
    );
}

#[test]
fn secrets_come_from_the_env_file() {
    let compose = compose();
    let gatehouse = service(&compose, "gatehouse");
    let secret = environment(gatehouse, "GATEHOUSE_JWT_SECRET");
    assert!(
        secret.starts_with("${GATEHOUSE_JWT_SECRET:?") && secret.ends_with('}'),
        "GATEHOUSE_JWT_SECRET must be `${{GATEHOUSE_JWT_SECRET:?…}}` (from docker-compose/.env, refused when empty), not `{secret}`"
    );
    assert!(
        gatehouse.get("env_file").is_none(),
        "variables are interpolated from docker-compose/.env, not passed wholesale"
    );

    // No service carries a literal secret.
    for (name, service) in services(&compose) {
        let Some(env) = service["environment"].as_mapping() else {
            continue;
        };
        for (key, value) in env {
            let (key, value) = (yaml_text(key), yaml_text(value));
            if key.contains("SECRET") || key.contains("PASSWORD") {
                assert!(
                    value.starts_with("${") && value.ends_with('}'),
                    "{name}: {key} must come from docker-compose/.env"
                );
            }
        }
    }

    // The config itself names no key.
    let config = compose_gatehouse_config();
    let jwt = config["auth"]["jwt"]
        .as_mapping()
        .cloned()
        .unwrap_or_else(Mapping::new);
    for key in ["secret_file", "key_file"] {
        assert!(
            !jwt.contains_key(key),
            "auth.jwt.{key}: the key is GATEHOUSE_JWT_SECRET from docker-compose/.env"
        );
    }

    // Only the example is committed, with the secret empty, and it defines every variable used.
    let example = read(&repo(ENV_EXAMPLE));
    assert!(
        example.lines().any(|l| l == "GATEHOUSE_JWT_SECRET="),
        "{ENV_EXAMPLE} must leave GATEHOUSE_JWT_SECRET empty"
    );
    let defined: BTreeSet<&str> = example
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .collect();
    let used = interpolated_variables(&read(&repo(COMPOSE_FILE)));
    let missing: Vec<&String> = used
        .iter()
        .filter(|v| !defined.contains(v.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{COMPOSE_FILE} uses {missing:?}, which {ENV_EXAMPLE} does not define"
    );
    let gitignore = read(&repo(".gitignore"));
    assert!(
        gitignore.lines().any(|l| l.trim() == "docker-compose/.env"),
        ".gitignore must keep docker-compose/.env out of git"
    );
}

/// Names in `${NAME…}` interpolations.
fn interpolated_variables(text: &str) -> BTreeSet<String> {
    text.split("${")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn every_service_has_a_health_check() {
    let compose = compose();
    for (name, service) in services(&compose) {
        let check = &service["healthcheck"];
        assert_ne!(
            check["disable"],
            Value::Bool(true),
            "{name}: health check disabled"
        );
        let test = strings(&check["test"]);
        assert!(
            matches!(test.first(), Some(&"CMD" | &"CMD-SHELL")) && test.len() > 1,
            "{name}: health check {test:?}"
        );
    }
    // The backends run the gatehouse image, whose HEALTHCHECK probes 8080: each must probe its own port.
    let backends = backend_services(&compose);
    assert_eq!(
        backends.len(),
        4,
        "four test backends (two pools): {backends:?}"
    );
    for (name, port) in backends {
        let test = strings(&service(&compose, &name)["healthcheck"]["test"]);
        let url = format!("http://127.0.0.1:{port}/health");
        assert_eq!(test, ["CMD", "gatehouse", "probe", url.as_str()], "{name}");
    }
}

#[test]
fn gatehouse_health_check_is_the_images() {
    let compose = compose();
    let ours = strings(&service(&compose, "gatehouse")["healthcheck"]["test"]);
    assert_eq!(
        ours[1..],
        dockerfile_healthcheck()[..],
        "compose and Dockerfile probe the same way"
    );
}

#[test]
fn prometheus_mounts_the_alert_rules_and_scrapes_admin_listen() {
    let compose = compose();
    let prometheus = service(&compose, "prometheus");
    let mounts = mounts(prometheus);
    let rules = mount_at(&mounts, "/etc/prometheus/alerts.yml");
    assert_eq!(
        rules.source, "../deploy/prometheus/alerts.yml",
        "the stack uses deploy's rules unchanged"
    );
    assert!(rules.read_only);
    let config_mount = mount_at(&mounts, "/etc/prometheus/prometheus.yml");
    let config = yaml(&config_mount.host_path());

    // Rule files are resolved against the config's directory.
    let rule_files = strings(&config["rule_files"]);
    let mounted: Vec<String> = rule_files
        .iter()
        .map(|f| {
            if f.starts_with('/') {
                (*f).to_owned()
            } else {
                format!("/etc/prometheus/{f}")
            }
        })
        .collect();
    assert!(
        mounted.iter().any(|f| f == "/etc/prometheus/alerts.yml"),
        "rule_files {rule_files:?} do not load alerts.yml"
    );

    // The alerts select job="gatehouse"; /metrics is only on admin_listen.
    let job = config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .find(|j| j["job_name"].as_str() == Some("gatehouse"))
        .expect("a scrape job named gatehouse");
    let targets: Vec<&str> = job["static_configs"]
        .as_sequence()
        .expect("static_configs")
        .iter()
        .flat_map(|c| strings(&c["targets"]))
        .collect();
    let admin = port_of(yaml_text(&compose_gatehouse_config()["admin_listen"]));
    assert_eq!(
        targets,
        [format!("gatehouse:{admin}")],
        "Prometheus must scrape the gatehouse service's admin_listen"
    );
}

#[test]
fn grafana_is_provisioned_from_deploy() {
    let compose = compose();
    let grafana = service(&compose, "grafana");
    let mounts = mounts(grafana);
    let provisioning = mount_at(&mounts, "/etc/grafana/provisioning");
    assert_eq!(provisioning.source, "../deploy/grafana/provisioning");

    let provider = yaml(&provisioning.host_path().join("dashboards/gatehouse.yml"));
    let folder = yaml_text(&provider["providers"][0]["options"]["path"]);
    let dashboard = mount_at(&mounts, &format!("{folder}/gatehouse-dashboard.json"));
    assert_eq!(
        dashboard.source,
        "../deploy/grafana/gatehouse-dashboard.json"
    );

    let datasource = yaml(&provisioning.host_path().join("datasources/prometheus.yml"));
    let (host, port) = host_port(yaml_text(&datasource["datasources"][0]["url"]));
    assert!(service(&compose, host).is_mapping());
    assert_eq!(port, 9090, "Prometheus listens on 9090 in its container");
    assert_eq!(
        yaml_text(&grafana["depends_on"][host]["condition"]),
        "service_healthy"
    );
}

#[test]
fn bind_mount_sources_exist() {
    let compose = compose();
    for (name, service) in services(&compose) {
        for mount in mounts(service).iter().filter(|m| m.is_bind()) {
            assert!(
                mount.host_path().exists(),
                "{name}: mounts {} which does not exist",
                mount.source
            );
            assert!(
                mount.read_only,
                "{name}: {} should be mounted read-only",
                mount.source
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Dockerfile

fn dockerfile() -> String {
    read(&repo("Dockerfile"))
}

/// Instructions of the last stage, continuation lines joined, comments dropped.
fn final_stage() -> Vec<String> {
    let text = dockerfile();
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                if !current.trim().is_empty() {
                    instructions.push(std::mem::take(&mut current));
                }
            }
        }
    }
    let last_from = instructions
        .iter()
        .rposition(|i| i.starts_with("FROM "))
        .expect("FROM");
    instructions.split_off(last_from)
}

fn instruction(stage: &[String], name: &str) -> String {
    let prefix = format!("{name} ");
    stage
        .iter()
        .rfind(|i| i.starts_with(&prefix))
        .unwrap_or_else(|| panic!("the final stage has no {name}"))
        .clone()
}

/// The exec-form command of the image's HEALTHCHECK.
fn dockerfile_healthcheck() -> Vec<String> {
    let healthcheck = instruction(&final_stage(), "HEALTHCHECK");
    let json = healthcheck
        .split_once(" CMD ")
        .expect("HEALTHCHECK … CMD [...]")
        .1;
    serde_json::from_str(json.trim()).expect("HEALTHCHECK CMD in exec form (no shell in the image)")
}

#[test]
fn image_runs_as_non_root_and_probes_itself() {
    let stage = final_stage();
    let user = instruction(&stage, "USER");
    let uid: u32 = user["USER ".len()..]
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric USER");
    assert_ne!(uid, 0, "{user}");
    assert_eq!(
        dockerfile_healthcheck(),
        ["gatehouse", "probe", "http://127.0.0.1:8080/health"]
    );
    assert_eq!(instruction(&stage, "EXPOSE"), "EXPOSE 8080 9090");
    assert!(instruction(&stage, "VOLUME").contains("/var/lib/gatehouse"));
    assert_eq!(
        instruction(&stage, "ENTRYPOINT"),
        r#"ENTRYPOINT ["gatehouse"]"#
    );
}

/// The image's default config (written by `printf` in the build stage, which also checks it).
#[test]
fn image_default_config_passes_gatehouse_check() {
    let text = dockerfile();
    let mut lines = text
        .lines()
        .skip_while(|l| !l.contains("printf '%s\\n'"))
        .skip(1);
    let mut config = String::new();
    for line in lines.by_ref() {
        let line = line.trim().trim_end_matches('\\').trim();
        if line.starts_with('>') {
            assert_eq!(line, "> /out/etc/gatehouse.yaml");
            break;
        }
        let inner = line
            .strip_prefix('\'')
            .and_then(|l| l.strip_suffix('\''))
            .expect("a '…' line");
        config.push_str(inner);
        config.push('\n');
    }
    assert!(
        config.contains("listen: 0.0.0.0:8080"),
        "the HEALTHCHECK probes 8080:\n{config}"
    );
    assert!(
        text.contains("COPY --from=build /out/etc/gatehouse.yaml /etc/gatehouse/gatehouse.yaml")
    );
    assert!(text.contains(r#"CMD ["serve", "--config", "/etc/gatehouse/gatehouse.yaml"]"#));
    let dir = TempDir::new("image-config");
    let path = dir.write("gatehouse.yaml", &config);
    assert_check_passes("the image's default config", &path);
}
