//! The `selfheal` binary as an operator runs it, with no cluster: `fixes`, `certs` and `serve`
//! on the local defaults (file store, certificates generated on first run).

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

fn selfheal() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_selfheal"));
    // No cluster: make sure no kubeconfig of the machine is picked up.
    command
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("HOME", "/nonexistent");
    command
}

#[test]
fn fixes_lists_the_file_as_a_table_yaml_and_json() {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fixes.yaml");
    let table = selfheal()
        .args(["fixes", "--fixes-file", data])
        .output()
        .unwrap();
    assert!(table.status.success(), "{table:?}");
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.starts_with("NAMESPACE"), "{text}");
    assert!(
        text.contains("gitlab-webservice") && text.contains("workhorse"),
        "{text}"
    );

    let json = selfheal()
        .args(["fixes", "--fixes-file", data, "-o", "json"])
        .output()
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["fixes"].as_array().unwrap().len(), 9);

    let yaml = selfheal()
        .args(["fixes", "--fixes-file", data, "-o", "yaml"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8(yaml.stdout)
            .unwrap()
            .contains("type: storage")
    );
}

#[test]
fn fixes_names_what_is_wrong_with_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixes.yaml");
    std::fs::write(&path, "fixes: {oops").unwrap();
    let output = selfheal()
        .args(["fixes", "--fixes-file", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("fixes.yaml") && stderr.contains("not valid YAML"),
        "{stderr}"
    );
}

#[test]
fn certs_writes_files_and_prints_the_ca_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let output = selfheal()
        .args(["certs", "--out-dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let bundle = String::from_utf8(output.stdout).unwrap();
    let ca = std::fs::read_to_string(dir.path().join("ca.crt")).unwrap();
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(bundle.trim())
        .unwrap();
    assert_eq!(decoded, ca.as_bytes());
    for file in ["ca.key", "tls.crt", "tls.key"] {
        assert!(dir.path().join(file).exists(), "{file}");
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn serve_on_local_defaults_generates_certificates_and_becomes_ready() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".state")).unwrap();
    std::fs::write(
        dir.path().join(".state/fixes.yaml"),
        "fixes:\n- {namespace: gitlab, resource: web, type: memory, value: 4Gi}\n",
    )
    .unwrap();
    let (https, health) = (free_port(), free_port());
    let mut child = selfheal()
        .current_dir(dir.path())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{https}"),
            "--health-listen",
            &format!("127.0.0.1:{health}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ready = None;
    // Up to 30 s: the first start generates a CA and a key, slow on a loaded CI machine.
    for _ in 0..600 {
        if let Some(body) = http_get(health, "/readyz") {
            ready = Some(body);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let metrics = http_get(health, "/metrics").unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        ready.is_some_and(|r| r.contains("200 OK")),
        "serve never became ready"
    );
    assert!(
        dir.path().join("certs/tls.crt").exists(),
        "certificates generated on first run"
    );
    assert!(metrics.contains("selfheal_fixes_loaded 1"), "{metrics}");
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

#[test]
fn health_from_a_kubectl_dump_reports_problems_and_exits_non_zero() {
    let dump = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/cluster-dump.json");
    let output = selfheal()
        .args(["health", "--from-file", dump])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let table = String::from_utf8(output.stdout).unwrap();
    let row = |needle: &str| {
        table
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no row for {needle}:\n{table}"))
            .to_string()
    };
    let web = row("gitlab-webservice-7d9f8c6b5-x2x7q");
    assert!(
        web.contains("OOMKilled")
            && web.contains("Deployment/gitlab-webservice")
            && web.contains("out of memory"),
        "{web}"
    );
    let registry = row("gitlab-registry");
    assert!(
        registry.contains("ImagePullBackOff") && registry.contains("image not found"),
        "{registry}"
    );
    let claim = row("data-gitlab-postgresql-0");
    assert!(
        claim.contains("ClaimPending")
            && claim.contains("StorageClass not found")
            && claim.contains("fast-ssd"),
        "{claim}"
    );
    assert!(!table.contains("sidekiq"), "healthy pods are not listed");

    let json = selfheal()
        .args(["health", "--from-file", dump, "-o", "json", "-n", "gitlab"])
        .output()
        .unwrap();
    let findings: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(findings.as_array().unwrap().len(), 3);
    assert_eq!(findings[0]["problem"]["problem"], "oomKilled");
}

#[test]
fn health_of_a_healthy_dump_exits_zero_and_a_bad_dump_names_the_problem() {
    let healthy = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/cluster-dump-healthy.json"
    );
    let output = selfheal()
        .args(["health", "--from-file", healthy])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8(output.stdout)
            .unwrap()
            .contains("No problems found")
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("dump.json");
    std::fs::write(
        &bad,
        r#"{"kind": "List", "items": [{"kind": "Pod", "metadata": 7}]}"#,
    )
    .unwrap();
    let output = selfheal()
        .args(["health", "--from-file", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("items[0] (Pod)"), "{stderr}");
}

fn run(command: &mut Command) -> (bool, String, String) {
    let output = command.output().unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn fixes_forget_export_and_import_work_on_the_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fixes.yaml");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fixes.yaml"),
        &file,
    )
    .unwrap();
    let file = file.to_str().unwrap();

    let (ok, out, err) = run(selfheal().args([
        "fixes",
        "forget",
        "gitlab/gitlab-webservice",
        "--container",
        "workhorse",
        "--fixes-file",
        file,
    ]));
    assert!(ok, "{err}");
    assert!(out.starts_with("removed 1 fix from file"), "{out}");
    assert!(out.contains("workhorse"), "{out}");
    let (ok, out, _) = run(selfheal().args([
        "fixes",
        "forget",
        "gitlab/gitlab-webservice",
        "--container",
        "workhorse",
        "--fixes-file",
        file,
    ]));
    assert!(ok && out.contains("nothing removed"), "{out}");

    let (ok, exported, err) = run(selfheal().args(["fixes", "export", "--fixes-file", file]));
    assert!(ok, "{err}");
    let backup = dir.path().join("backup.yaml");
    std::fs::write(&backup, &exported).unwrap();
    let (ok, out, err) = run(selfheal().args([
        "fixes",
        "import",
        backup.to_str().unwrap(),
        "--fixes-file",
        dir.path().join("restored.yaml").to_str().unwrap(),
    ]));
    assert!(ok, "{err}");
    assert!(
        out.contains("8 added, 0 raised, 0 unchanged, 0 skipped"),
        "{out}"
    );

    let (ok, out, err) =
        run(selfheal().args(["fixes", "forget", "no-slash", "--fixes-file", file]));
    assert!(
        !ok && out.is_empty() && err.contains("NAMESPACE/RESOURCE"),
        "{err}"
    );
}

/// Whether `program` runs here (`program --version` exits 0).
fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Printed even when the harness captures output (it captures `eprintln!`).
fn notice(text: &str) {
    use std::io::Write;
    let _ = std::fs::OpenOptions::new()
        .append(true)
        .open("/dev/stderr")
        .and_then(|mut stderr| writeln!(stderr, "{text}"));
}

#[test]
fn completions_for_each_shell_name_the_commands_and_parse_in_that_shell() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let (ok, out, err) = run(selfheal().args(["completions", shell]));
        assert!(ok, "{shell}: {err}");
        for command in ["serve", "fixes", "health", "forget", "prune"] {
            assert!(out.contains(command), "{shell} completion lacks {command}");
        }
        // The shell's own parser reads the script without running it (`-n`, noexec).
        if !installed(shell) {
            notice(&format!(
                "SKIPPED `{shell} -n` on the {shell} completion: {shell} is not installed here"
            ));
            continue;
        }
        let script = dir.path().join(format!("selfheal.{shell}"));
        std::fs::write(&script, &out).unwrap();
        let (ok, _, err) = run(Command::new(shell).arg("-n").arg(&script));
        assert!(
            ok && err.is_empty(),
            "`{shell} -n` refuses the completion: {err}"
        );
    }
}

#[test]
fn the_man_page_names_the_commands() {
    let (ok, page, err) = run(selfheal().arg("man"));
    assert!(ok, "{err}");
    assert!(
        page.starts_with(".ie") || page.contains(".TH selfheal 1"),
        "{page}"
    );
    for command in ["serve", "fixes", "health", "heal", "unseal", "completions"] {
        assert!(
            page.contains(&format!("selfheal\\-{command}(1)")),
            "the man page does not name {command}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(selfheal().args(["man", "--dir", dir.path().to_str().unwrap()]));
    assert!(ok, "{err}");
    let forget = std::fs::read_to_string(dir.path().join("selfheal-fixes-forget.1")).unwrap();
    assert!(forget.contains("\\-\\-container"), "{forget}");
}

#[test]
fn as_the_kubectl_plugin_help_says_kubectl_selfheal() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("kubectl-selfheal");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_selfheal"), &plugin).unwrap();
    let mut command = Command::new(&plugin);
    command.env("KUBECONFIG", "/nonexistent/kubeconfig");
    let (ok, help, err) = run(command.arg("--help"));
    assert!(ok, "{err}");
    assert!(
        help.contains("Usage: kubectl selfheal [OPTIONS] <COMMAND>"),
        "{help}"
    );
    let mut command = Command::new(&plugin);
    let (ok, help, _) = run(command.args(["health", "--help"]));
    assert!(
        ok && help.contains("Usage: kubectl selfheal health"),
        "{help}"
    );
    let (_, _, err) = run(selfheal().arg("--help"));
    assert!(err.is_empty());
    let (_, help, _) = run(selfheal().arg("--help"));
    assert!(help.contains("Usage: selfheal "), "{help}");
}

#[test]
fn kubeconfig_and_context_select_the_cluster_every_command_talks_to() {
    // Two contexts on loopback ports where nothing listens: the error names the one chosen.
    let (current, chosen) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1
kind: Config
current-context: current
clusters:
- name: current
  cluster: {{server: 'https://127.0.0.1:{current}'}}
- name: chosen
  cluster: {{server: 'https://127.0.0.1:{chosen}'}}
users:
- name: someone
  user: {{token: not-a-secret}}
contexts:
- name: current
  context: {{cluster: current, user: someone}}
- name: chosen
  context: {{cluster: chosen, user: someone}}
"
        ),
    )
    .unwrap();
    let kubeconfig = kubeconfig.to_str().unwrap();
    for args in [
        vec!["fixes"],
        vec!["health"],
        vec!["fixes", "forget", "a/b"],
    ] {
        let mut command = selfheal();
        command
            .args(&args)
            .args(["--kubeconfig", kubeconfig, "--context", "chosen"]);
        let (ok, _, err) = run(&mut command);
        assert!(!ok, "{args:?}");
        assert!(
            err.contains(&format!("127.0.0.1:{chosen}")) && err.contains("context chosen"),
            "{args:?}: {err}"
        );
        assert!(!err.contains(&format!("127.0.0.1:{current}")), "{err}");
    }
    // The environment variables do the same.
    let (ok, _, err) = run(selfheal()
        .arg("fixes")
        .env("SELFHEAL_KUBECONFIG", kubeconfig)
        .env("SELFHEAL_CONTEXT", "chosen"));
    assert!(!ok && err.contains(&format!("127.0.0.1:{chosen}")), "{err}");
    // A context the kubeconfig lacks is named.
    let (ok, _, err) =
        run(selfheal().args(["fixes", "--kubeconfig", kubeconfig, "--context", "nosuch"]));
    assert!(!ok && err.contains("nosuch"), "{err}");
}
