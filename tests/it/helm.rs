//! The Helm chart (`helm/gatehouse`): the config it renders is one the real binary accepts
//! (`gatehouse check`), the Deployment is locked down and probed, values that cannot work are
//! refused at render time, the monitoring objects carry `deploy/prometheus/alerts.yml`, and the
//! Ingress and demo backends line up with the services of the config.
//!
//! How to run: `scripts/validate-deploy` (installs helm into `target/tools/helm/helm` and
//! validates the rendered manifests), then `cargo test --test it helm::`. helm is `GATEHOUSE_HELM`, or
//! `target/tools/helm/helm` (`$GATEHOUSE_TOOLS_DIR/helm/helm`); without it the tests that render
//! print `SKIPPED: …` and return, unless `GATEHOUSE_REQUIRE_TOOLS=1` makes that a failure. The
//! check that the chart's alerts are a copy of `deploy/prometheus/alerts.yml` needs no tool.

use crate::common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use serde::Deserialize as _;
use serde_yaml_ng::Value;

use common::binary::{check, TempDir};
use common::files::{repo, yaml_text};

const PROD_VALUES: &str = "helm/gatehouse/ci/prod-values.yaml";
const CONFIG_KEY: &str = "gatehouse.yaml";
const CONFIG_DIR: &str = "/etc/gatehouse/config";

/// helm, rendering the chart as release `gatehouse`.
struct Helm(PathBuf);

impl Helm {
    /// `GATEHOUSE_HELM`, else the cache `scripts/validate-deploy` fills; `None` after saying the
    /// test is skipped (a failure with `GATEHOUSE_REQUIRE_TOOLS=1`).
    fn find(test: &str) -> Option<Helm> {
        if let Some(path) = std::env::var_os("GATEHOUSE_HELM").filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "GATEHOUSE_HELM={} is not a file",
                path.display()
            );
            return Some(Helm(path));
        }
        let tools = std::env::var_os("GATEHOUSE_TOOLS_DIR")
            .filter(|p| !p.is_empty())
            .map_or_else(|| repo("target/tools"), PathBuf::from);
        let cached = tools.join("helm/helm");
        if cached.is_file() {
            return Some(Helm(cached));
        }
        let reason = format!(
            "GATEHOUSE_HELM is not set and {} does not exist (scripts/validate-deploy installs it)",
            cached.display()
        );
        if std::env::var("GATEHOUSE_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("GATEHOUSE_REQUIRE_TOOLS=1 but {reason}");
        }
        eprintln!("SKIPPED: {test}: {reason}");
        None
    }

    /// `helm template gatehouse helm/gatehouse ARGS`: the manifests, or helm's error output.
    fn template(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new(&self.0)
            .arg("template")
            .arg("gatehouse")
            .arg(repo("helm/gatehouse"))
            .args(["--namespace", "gatehouse"])
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.0.display()));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(format!("{}{stderr}", stdout))
        }
    }

    /// The rendered objects; panics when the render fails.
    fn render(&self, args: &[&str]) -> Vec<Value> {
        let text = self
            .template(args)
            .unwrap_or_else(|e| panic!("helm template {args:?} failed:\n{e}"));
        serde_yaml_ng::Deserializer::from_str(&text)
            .map(|doc| Value::deserialize(doc).expect("helm rendered invalid YAML"))
            .filter(|doc| !doc.is_null())
            .collect()
    }
}

/// The values variants every structural check runs on.
fn variants() -> [(&'static str, Vec<&'static str>); 2] {
    [("default", vec![]), ("prod", vec!["-f", PROD_VALUES])]
}

fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} in the render"))
}

fn all<'a>(objects: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    objects
        .iter()
        .filter(move |o| o["kind"].as_str() == Some(kind))
}

fn seq(value: &Value) -> &[Value] {
    value.as_sequence().map_or(&[], |s| s.as_slice())
}

/// The Gatehouse config inside the rendered ConfigMap.
fn rendered_config(objects: &[Value]) -> String {
    yaml_text(&object(objects, "ConfigMap", "gatehouse")["data"][CONFIG_KEY]).to_owned()
}

/// Runs the real `gatehouse check --config` on `config`; panics with its output unless it passes.
fn assert_gatehouse_accepts(variant: &str, config: &str) {
    let dir = TempDir::new("helm-config");
    let path = dir.write(CONFIG_KEY, config);
    let output = check(&path);
    assert!(
        output.status.success(),
        "gatehouse check rejects the config the chart renders ({variant}):\n{}{}\n--- config:\n{config}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

// ---------------------------------------------------------------------------------------------

#[test]
fn chart_alerts_are_a_copy_of_deploy_alerts() {
    let chart = std::fs::read(repo("helm/gatehouse/files/alerts.yml")).expect("chart alerts");
    let deploy = std::fs::read(repo("deploy/prometheus/alerts.yml")).expect("deploy alerts");
    assert!(
        chart == deploy,
        "helm/gatehouse/files/alerts.yml differs from deploy/prometheus/alerts.yml; refresh it with\n  \
         cp deploy/prometheus/alerts.yml helm/gatehouse/files/alerts.yml"
    );
}

#[test]
fn rendered_configs_pass_gatehouse_check() {
    let Some(helm) = Helm::find("rendered_configs_pass_gatehouse_check") else {
        return;
    };
    let cases: [(&str, Vec<&str>); 4] = [
        ("default", vec![]),
        ("prod", vec!["-f", PROD_VALUES]),
        ("sqlite", vec!["-f", "helm/gatehouse/ci/sqlite-values.yaml"]),
        ("no admin_listen", vec!["--set", "config.admin_listen=null"]),
    ];
    for (variant, args) in cases {
        let mut args = args;
        args.extend(["--show-only", "templates/configmap.yaml"]);
        let config = rendered_config(&helm.render(&args));
        assert_gatehouse_accepts(variant, &config);
        let parsed: Value = serde_yaml_ng::from_str(&config).expect("config is YAML");
        assert!(
            !yaml_text(&parsed["listen"]).starts_with("127."),
            "{variant}: listen must not be loopback in a pod"
        );
    }
}

#[test]
fn deployment_is_locked_down_and_probed() {
    let Some(helm) = Helm::find("deployment_is_locked_down_and_probed") else {
        return;
    };
    for (variant, args) in variants() {
        let objects = helm.render(&args);
        let deployment = object(&objects, "Deployment", "gatehouse");
        let pod = &deployment["spec"]["template"];
        let spec = &pod["spec"];

        // Who runs it.
        let pod_security = &spec["securityContext"];
        assert_eq!(pod_security["runAsNonRoot"], Value::Bool(true), "{variant}");
        assert_eq!(pod_security["runAsUser"].as_u64(), Some(10001), "{variant}");
        assert_eq!(
            pod_security["seccompProfile"]["type"].as_str(),
            Some("RuntimeDefault"),
            "{variant}"
        );
        assert_eq!(spec["automountServiceAccountToken"], Value::Bool(false));
        let containers: Vec<&Value> = seq(&spec["containers"])
            .iter()
            .chain(seq(&spec["initContainers"]))
            .collect();
        assert!(!containers.is_empty());
        for container in &containers {
            let name = yaml_text(&container["name"]);
            let security = &container["securityContext"];
            assert_eq!(
                security["runAsNonRoot"],
                Value::Bool(true),
                "{variant} {name}"
            );
            assert_eq!(
                security["readOnlyRootFilesystem"],
                Value::Bool(true),
                "{variant} {name}"
            );
            assert_eq!(
                security["allowPrivilegeEscalation"],
                Value::Bool(false),
                "{variant} {name}"
            );
            let dropped: Vec<&str> = seq(&security["capabilities"]["drop"])
                .iter()
                .map(yaml_text)
                .collect();
            assert_eq!(dropped, ["ALL"], "{variant} {name}");
            let resources = &container["resources"];
            for resource in ["cpu", "memory"] {
                assert!(
                    !resources["requests"][resource].is_null(),
                    "{variant} {name}: no {resource} request"
                );
            }
            assert!(
                !resources["limits"]["memory"].is_null(),
                "{variant} {name}: no memory limit"
            );
        }

        // What it runs.
        let gatehouse = containers
            .iter()
            .find(|c| c["name"].as_str() == Some("gatehouse"))
            .expect("container gatehouse");
        let args: Vec<&str> = seq(&gatehouse["args"]).iter().map(yaml_text).collect();
        let config_path = format!("{CONFIG_DIR}/{CONFIG_KEY}");
        assert_eq!(
            args[..3],
            ["serve", "--config", config_path.as_str()],
            "{variant}"
        );
        let ports: Vec<(&str, u64)> = seq(&gatehouse["ports"])
            .iter()
            .map(|p| {
                (
                    yaml_text(&p["name"]),
                    p["containerPort"].as_u64().expect("port"),
                )
            })
            .collect();
        assert_eq!(ports, [("http", 8080), ("admin", 9090)], "{variant}");

        // Probes on the admin port (admin_listen is set in both).
        for (probe, path) in [
            ("livenessProbe", "/health"),
            ("readinessProbe", "/ready"),
            ("startupProbe", "/health"),
        ] {
            let get = &gatehouse[probe]["httpGet"];
            assert_eq!(get["path"].as_str(), Some(path), "{variant} {probe}");
            assert_eq!(get["port"].as_str(), Some("admin"), "{variant} {probe}");
            assert_eq!(get["scheme"].as_str(), Some("HTTP"), "{variant} {probe}");
        }

        // Writable paths are volumes; the config is a whole directory (hot reload sees updates).
        let volumes = seq(&spec["volumes"]);
        let mut writable = BTreeSet::new();
        for mount in seq(&gatehouse["volumeMounts"]) {
            let path = yaml_text(&mount["mountPath"]);
            assert!(mount["subPath"].is_null(), "{variant}: {path} uses subPath");
            let volume = volumes
                .iter()
                .find(|v| v["name"] == mount["name"])
                .unwrap_or_else(|| panic!("{variant}: no volume for {path}"));
            if mount["readOnly"] != Value::Bool(true) {
                assert!(
                    !volume["emptyDir"].is_null() || !volume["persistentVolumeClaim"].is_null(),
                    "{variant}: writable {path} is not an emptyDir or a claim"
                );
                writable.insert(path);
            } else if path == CONFIG_DIR {
                assert_eq!(
                    volume["configMap"]["name"].as_str(),
                    Some("gatehouse"),
                    "{variant}"
                );
            }
        }
        assert_eq!(
            writable,
            BTreeSet::from(["/tmp", "/var/lib/gatehouse"]),
            "{variant}"
        );

        // A config change rolls the pods (values.yaml, rollOnConfigChange).
        let checksum = pod["metadata"]["annotations"]["checksum/config"]
            .as_str()
            .unwrap_or_else(|| panic!("{variant}: no checksum/config annotation"));
        assert!(
            checksum.len() == 64 && checksum.bytes().all(|b| b.is_ascii_hexdigit()),
            "{variant}: checksum/config is {checksum}"
        );

        // The replica count belongs to the HPA when there is one.
        let hpa = all(&objects, "HorizontalPodAutoscaler").next();
        match (variant, hpa) {
            ("default", None) => assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(2)),
            ("prod", Some(hpa)) => {
                assert!(
                    deployment["spec"]["replicas"].is_null(),
                    "prod: replicas set beside the HPA"
                );
                assert_eq!(hpa["apiVersion"].as_str(), Some("autoscaling/v2"));
                assert_eq!(hpa["spec"]["minReplicas"].as_u64(), Some(3));
                let metrics: Vec<&str> = seq(&hpa["spec"]["metrics"])
                    .iter()
                    .map(|m| {
                        m["resource"]["name"]
                            .as_str()
                            .or(m["pods"]["metric"]["name"].as_str())
                            .expect("metric name")
                    })
                    .collect();
                assert_eq!(metrics, ["cpu", "memory", "gatehouse_requests_per_second"]);
            }
            (variant, hpa) => panic!("{variant}: unexpected HPA {hpa:?}"),
        }
        assert_eq!(all(&objects, "PodDisruptionBudget").count(), 1, "{variant}");
    }
}

#[test]
fn probes_follow_admin_listen() {
    let Some(helm) = Helm::find("probes_follow_admin_listen") else {
        return;
    };
    let objects = helm.render(&[
        "--set",
        "config.admin_listen=null",
        "--set",
        "serviceMonitor.enabled=true",
    ]);
    let gatehouse =
        &object(&objects, "Deployment", "gatehouse")["spec"]["template"]["spec"]["containers"][0];
    let ports: Vec<&str> = seq(&gatehouse["ports"])
        .iter()
        .map(|p| yaml_text(&p["name"]))
        .collect();
    assert_eq!(ports, ["http"]);
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        assert_eq!(gatehouse[probe]["httpGet"]["port"].as_str(), Some("http"));
    }
    // /metrics is on `listen` now: the ServiceMonitor follows, and there is no admin Service.
    let monitor = object(&objects, "ServiceMonitor", "gatehouse");
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"].as_str(),
        Some("http")
    );
    assert!(all(&objects, "Service").all(|s| s["metadata"]["name"] != "gatehouse-admin"));
}

#[test]
fn render_refuses_values_that_cannot_work() {
    let Some(helm) = Helm::find("render_refuses_values_that_cannot_work") else {
        return;
    };
    let sqlite_shared = "database.type=sqlite keeps accounts in a file inside each pod";
    let cases: [(&[&str], &str); 8] = [
        // values.schema.json: a misspelt key is not silently ignored.
        (
            &["--set", "replicaCont=3"],
            "Additional property replicaCont is not allowed",
        ),
        (&["--set", "database.type=sqlite"], sqlite_shared),
        (
            &[
                "--set",
                "database.type=sqlite",
                "--set",
                "replicaCount=1",
                "--set",
                "autoscaling.enabled=true",
            ],
            sqlite_shared,
        ),
        (
            &["-f", PROD_VALUES, "--set", "database.type=sqlite"],
            sqlite_shared,
        ),
        (
            &["--set", "database.type=external"],
            "database.type=external needs the PostgreSQL URL",
        ),
        (
            &["--set", "database.type=mysql"],
            // values.schema.json's enum (the template's own check backs it up).
            "database.type must be one of the following",
        ),
        (
            &["--set", "jwtSecret=too-short"],
            "jwtSecret must be at least 32 bytes",
        ),
        (
            &["--set", "config.listen=127.0.0.1:8080"],
            "a loopback address",
        ),
    ];
    for (args, expected) in cases {
        match helm.template(args) {
            Ok(_) => panic!("helm template {args:?} succeeded; it must fail with: {expected}"),
            Err(error) => assert!(
                error.contains(expected),
                "helm template {args:?} failed without saying `{expected}`:\n{error}"
            ),
        }
    }
}

#[test]
fn secrets_are_generated_or_required_never_defaulted() {
    let Some(helm) = Helm::find("secrets_are_generated_or_required_never_defaulted") else {
        return;
    };
    let jwt = |args: &[&str]| -> String {
        let objects = helm.render(args);
        let secret = object(&objects, "Secret", "gatehouse");
        let encoded = yaml_text(&secret["data"]["GATEHOUSE_JWT_SECRET"]);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64");
        String::from_utf8(bytes).expect("UTF-8")
    };
    // No cluster to look the previous value up in: a fresh random one each time.
    let (first, second) = (jwt(&[]), jwt(&[]));
    assert_eq!(first.len(), 64);
    assert!(first.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_ne!(first, second, "the generated JWT secret is not random");
    let chosen = "a-chosen-secret-of-at-least-32-bytes!";
    assert_eq!(jwt(&["--set", &format!("jwtSecret={chosen}")]), chosen);

    // prod: everything from existingSecret, and no Secret of the chart's own.
    let objects = helm.render(&["-f", PROD_VALUES]);
    assert_eq!(all(&objects, "Secret").count(), 0, "prod renders a Secret");
    let env = &object(&objects, "Deployment", "gatehouse")["spec"]["template"]["spec"]
        ["containers"][0]["env"];
    for (name, key) in [
        ("GATEHOUSE_JWT_SECRET", "GATEHOUSE_JWT_SECRET"),
        ("DATABASE_URL", "DATABASE_URL"),
    ] {
        let var = seq(env)
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("prod: no {name}"));
        let from = &var["valueFrom"]["secretKeyRef"];
        assert_eq!(from["name"].as_str(), Some("gatehouse-secrets"), "{name}");
        assert_eq!(from["key"].as_str(), Some(key), "{name}");
    }
}

#[test]
fn monitoring_objects_carry_the_alerts_and_the_job_name() {
    let Some(helm) = Helm::find("monitoring_objects_carry_the_alerts_and_the_job_name") else {
        return;
    };
    let objects = helm.render(&["-f", PROD_VALUES]);
    let alerts: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo("deploy/prometheus/alerts.yml")).expect("alerts.yml"),
    )
    .expect("alerts.yml is YAML");
    let rule = object(&objects, "PrometheusRule", "gatehouse");
    assert_eq!(
        rule["apiVersion"].as_str(),
        Some("monitoring.coreos.com/v1")
    );
    assert!(
        rule["spec"] == alerts,
        "the PrometheusRule's spec is not deploy/prometheus/alerts.yml"
    );

    let monitor = object(&objects, "ServiceMonitor", "gatehouse");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"].as_str(), Some("/metrics"));
    let job: Vec<&Value> = seq(&endpoint["relabelings"])
        .iter()
        .filter(|r| r["targetLabel"].as_str() == Some("job"))
        .map(|r| &r["replacement"])
        .collect();
    assert_eq!(
        job,
        [&Value::from("gatehouse")],
        "the alerts select job=\"gatehouse\""
    );
    // It selects exactly the admin Service, which has the port it names.
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("matchLabels");
    let selected: Vec<&Value> = all(&objects, "Service")
        .filter(|s| {
            selector
                .iter()
                .all(|(k, v)| s["metadata"]["labels"].get(k) == Some(v))
        })
        .collect();
    assert_eq!(selected.len(), 1, "the ServiceMonitor selects {selected:?}");
    assert_eq!(
        selected[0]["metadata"]["name"].as_str(),
        Some("gatehouse-admin")
    );
    assert!(seq(&selected[0]["spec"]["ports"])
        .iter()
        .any(|p| p["name"] == endpoint["port"]));
}

#[test]
fn ingress_and_demo_backends_match_the_config() {
    let Some(helm) = Helm::find("ingress_and_demo_backends_match_the_config") else {
        return;
    };
    for (variant, args) in variants() {
        let objects = helm.render(&args);
        let config: Value =
            serde_yaml_ng::from_str(&rendered_config(&objects)).expect("config is YAML");

        // Every service host and the control host reach the proxy's `http` port.
        let mut expected: BTreeSet<&str> = seq(&config["services"])
            .iter()
            .flat_map(|s| seq(&s["hosts"]).iter().map(yaml_text))
            .collect();
        expected.insert("gatehouse.my-company.com");
        let ingress = object(&objects, "Ingress", "gatehouse");
        let mut hosts = BTreeSet::new();
        for rule in seq(&ingress["spec"]["rules"]) {
            hosts.insert(yaml_text(&rule["host"]));
            let backend = &rule["http"]["paths"][0]["backend"]["service"];
            assert_eq!(backend["name"].as_str(), Some("gatehouse"));
            assert_eq!(backend["port"]["name"].as_str(), Some("http"));
        }
        assert_eq!(hosts, expected, "{variant}: Ingress hosts");
        assert_eq!(
            seq(&ingress["spec"]["tls"]).is_empty(),
            variant == "default",
            "{variant}: TLS"
        );

        // Demo backends: on by default, each backend URL of the config is a rendered Service
        // whose Deployment runs `gatehouse-backend` on that port.
        let demo: Vec<&Value> = all(&objects, "Deployment")
            .filter(|d| d["metadata"]["name"] != "gatehouse")
            .collect();
        if variant == "prod" {
            assert!(demo.is_empty(), "prod renders demo backends");
            continue;
        }
        assert_eq!(demo.len(), 4);
        for service in seq(&config["services"]) {
            for backend in seq(&service["backends"]) {
                let url = yaml_text(&backend["url"]);
                let (name, port) = url
                    .strip_prefix("http://")
                    .and_then(|rest| rest.split_once(':'))
                    .unwrap_or_else(|| panic!("backend url {url}"));
                let port: u64 = port.parse().expect("port");
                let svc = object(&objects, "Service", name);
                assert_eq!(
                    svc["spec"]["ports"][0]["port"].as_u64(),
                    Some(port),
                    "{url}"
                );
                let pod = &object(&objects, "Deployment", name)["spec"]["template"]["spec"];
                let command: Vec<&str> = seq(&pod["containers"][0]["command"])
                    .iter()
                    .map(yaml_text)
                    .collect();
                let listen = format!("0.0.0.0:{port}");
                assert_eq!(
                    command[..3],
                    ["gatehouse-backend", "--listen", listen.as_str()]
                );
                assert_eq!(command[3], "--name");
            }
        }
    }
}
