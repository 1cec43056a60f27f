"""Hostile programs in each language the table added (C++, Go, Rust, JavaScript, Java) on every backend CI has.

C and Python have their own cases in test_adversarial.py. Here each language has one hostile program that reads
what to do from stdin (fork bomb, memory balloon, output flood, network, writes outside the work dir,
reading host files, a daemon outliving the run), so it compiles once per language and backend (a module-scoped
build) and then runs once per behaviour. The run's command line carries a per-test token (an extra argument),
so anything the run leaves alive is found on the host afterwards. Compile-time explosions get their own sources
(C++ constant evaluation, Rust macro expansion; javac and the Go compiler evaluate nothing unbounded at compile
time, so those two get only the compiler-output flood).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from verifarm.sandbox import Program, Status, run
from verifarm.sandbox.compile_run import Build, build
from verifarm.sandbox.languages import get_language
from verifarm.sandbox.selection import BACKEND_NAMES, probe_backend

ANY_FAILURE = {Status.NONZERO_EXIT, Status.TIMEOUT, Status.MEMORY_LIMIT, Status.OUTPUT_LIMIT, Status.KILLED}

CPP = r"""#include <bits/stdc++.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
int main(int argc, char **argv) {
    std::string token = argc > 1 ? argv[1] : "", what, path;
    std::cin >> what;
    if (what == "fork") for (;;) fork();
    if (what == "memory") { std::vector<char *> keep; for (;;) { char *p = new char[1 << 24]; memset(p, 1, 1 << 24); keep.push_back(p); } }
    if (what == "flood") for (;;) std::cout << "spam spam spam\n";
    if (what == "network") {
        int s = socket(AF_INET, SOCK_STREAM, 0); sockaddr_in a{}; a.sin_family = AF_INET; a.sin_port = htons(6379);
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        if (connect(s, (sockaddr *)&a, sizeof a) == 0) { puts("CONNECTED"); return 0; }
        return 7;
    }
    if (what == "write") { while (std::cin >> path) { FILE *f = fopen(path.c_str(), "w"); if (f) { fputs("pwned", f); fclose(f); } } return 0; }
    if (what == "read") { while (std::cin >> path) { std::ifstream in(path); std::stringstream s; s << in.rdbuf(); std::cout << s.str(); } return 0; }
    if (what == "daemon") { if (fork() == 0) { setsid(); execl("/bin/sh", "sh", "-c", "sleep 120; sleep 120", token.c_str(), (char *)0); _exit(0); } return 0; }
    return 3;
}
"""

GO = r"""package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 2 && os.Args[2] == "child" {
		time.Sleep(time.Hour)
		return
	}
	token := ""
	if len(os.Args) > 1 {
		token = os.Args[1]
	}
	in := bufio.NewScanner(os.Stdin)
	in.Split(bufio.ScanWords)
	in.Scan()
	switch in.Text() {
	case "fork":
		for {
			_ = exec.Command("/proc/self/exe", token, "child").Start()
		}
	case "memory":
		var keep [][]byte
		for {
			b := make([]byte, 1<<24)
			for i := range b {
				b[i] = 1
			}
			keep = append(keep, b)
		}
	case "flood":
		w := bufio.NewWriter(os.Stdout)
		for {
			w.WriteString("spam spam spam\n")
		}
	case "network":
		c, err := net.DialTimeout("tcp", "127.0.0.1:6379", time.Second)
		if err == nil {
			fmt.Println("CONNECTED")
			c.Close()
			return
		}
		os.Exit(7)
	case "write":
		for in.Scan() {
			_ = os.WriteFile(in.Text(), []byte("pwned"), 0o644)
		}
	case "read":
		for in.Scan() {
			data, _ := os.ReadFile(in.Text())
			os.Stdout.Write(data)
		}
	case "daemon":
		c := exec.Command("/bin/sh", "-c", "sleep 120; sleep 120", token)
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		_ = c.Start()
	default:
		os.Exit(3)
	}
}
"""

RUST = r"""use std::io::{Read, Write};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() > 2 && args[2] == "child" { std::thread::sleep(std::time::Duration::from_secs(3600)); return; }
    let token = args.get(1).cloned().unwrap_or_default();
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).unwrap();
    let mut words = input.split_whitespace();
    match words.next().unwrap_or("") {
        "fork" => loop { let _ = std::process::Command::new("/proc/self/exe").arg(&token).arg("child").spawn(); },
        "memory" => { let mut keep: Vec<Vec<u8>> = Vec::new(); loop { keep.push(vec![1u8; 1 << 24]); } }
        "flood" => { let out = std::io::stdout(); let mut out = out.lock(); loop { let _ = out.write_all(b"spam spam spam\n"); } }
        "network" => {
            if std::net::TcpStream::connect("127.0.0.1:6379").is_ok() { println!("CONNECTED"); } else { std::process::exit(7); }
        }
        "write" => for path in words { let _ = std::fs::write(path, "pwned"); },
        "read" => for path in words { if let Ok(data) = std::fs::read(path) { std::io::stdout().write_all(&data).unwrap(); } },
        "daemon" => { let _ = std::process::Command::new("/bin/sh").args(["-c", "sleep 120; sleep 120", &token]).spawn(); }
        _ => std::process::exit(3),
    }
}
"""

JAVASCRIPT = r"""const { spawn } = require('child_process');
const fs = require('fs');
const net = require('net');
const token = process.argv[2] || '';
if (process.argv[3] === 'child') {
  setInterval(() => {}, 1 << 30);
} else {
  const words = fs.readFileSync(0, 'utf8').split(/\s+/).filter(Boolean);
  const what = words.shift();
  if (what === 'fork') for (;;) { try { spawn(process.execPath, [__filename, token, 'child'], { stdio: 'ignore' }); } catch (e) {} }
  else if (what === 'memory') { const keep = []; for (;;) keep.push(new Array(1 << 20).fill(1.5)); }
  else if (what === 'flood') for (;;) { try { fs.writeSync(1, 'spam spam spam\n'); } catch (e) {} }
  else if (what === 'network') {
    net.connect(6379, '127.0.0.1').on('connect', () => { console.log('CONNECTED'); process.exit(0); })
      .on('error', () => process.exit(7));
  } else if (what === 'write') { for (const p of words) { try { fs.writeFileSync(p, 'pwned'); } catch (e) {} } }
  else if (what === 'read') { for (const p of words) { try { fs.writeSync(1, fs.readFileSync(p)); } catch (e) {} } }
  else if (what === 'daemon') spawn('/bin/sh', ['-c', 'sleep 120; sleep 120', token], { detached: true, stdio: 'ignore' }).unref();
  else process.exit(3);
}
"""

JAVA = r"""import java.io.*;
import java.net.*;
import java.nio.file.*;
import java.util.*;

public class Main {
    public static void main(String[] args) throws Exception {
        String token = args.length > 0 ? args[0] : "";
        String[] words = new String(System.in.readAllBytes()).trim().split("\\s+");
        switch (words[0]) {
            case "fork": {
                List<Process> keep = new ArrayList<>();
                while (true) {
                    try { keep.add(new ProcessBuilder("/bin/sh", "-c", "sleep 3600", token).start()); }
                    catch (Throwable e) { }
                }
            }
            case "memory": {
                List<long[]> keep = new ArrayList<>();
                while (true) keep.add(new long[1 << 21]);
            }
            case "flood": {
                PrintStream out = new PrintStream(new FileOutputStream(FileDescriptor.out), false);
                while (true) out.print("spam spam spam\n");
            }
            case "network":
                try (Socket s = new Socket()) {
                    s.connect(new InetSocketAddress("127.0.0.1", 6379), 1000);
                    System.out.println("CONNECTED");
                } catch (IOException e) { System.exit(7); }
                return;
            case "write":
                for (int i = 1; i < words.length; i++) {
                    try { Files.writeString(Path.of(words[i]), "pwned"); } catch (Exception e) { }
                }
                return;
            case "read":
                for (int i = 1; i < words.length; i++) {
                    try { System.out.write(Files.readAllBytes(Path.of(words[i]))); } catch (Exception e) { }
                }
                System.out.flush();
                return;
            case "daemon":
                new ProcessBuilder("/bin/sh", "-c", "sleep 120; sleep 120", token)
                    .redirectOutput(ProcessBuilder.Redirect.DISCARD).redirectError(ProcessBuilder.Redirect.DISCARD).start();
                return;
            default:
                System.exit(3);
        }
    }
}
"""

SOURCES = {"cpp": CPP, "go": GO, "rust": RUST, "javascript": JAVASCRIPT, "java": JAVA}

# A fork bomb ends at the process limit; what follows depends on the runtime (C++ keeps forking until its CPU
# time is up, Go and the JVM may die when they cannot start a thread), but never in a pass.
BEHAVIOURS = {
    "fork": {Status.TIMEOUT, Status.KILLED, Status.NONZERO_EXIT, Status.MEMORY_LIMIT},
    "memory": {Status.MEMORY_LIMIT},
    "flood": {Status.OUTPUT_LIMIT},
}


def _available_backends() -> list[str]:
    return [name for name in BACKEND_NAMES if probe_backend(name) is None]


def _hostile_limits(language: str, short_wall: bool):
    limits = get_language(language).run_limits
    # The JVM and node start in a few hundred CPU milliseconds; 1.5 s leaves them room to misbehave.
    return dataclasses.replace(limits, cpu_seconds=1.5, wall_seconds=4 if short_wall else 30, output_bytes=32 * 1024)


_BUILDS: dict[tuple[str, str], Build] = {}


def _built(language: str, backend: str) -> Build:
    """The hostile program of language, compiled once per backend for the whole module."""
    key = (language, backend)
    if key not in _BUILDS:
        built = build(language, SOURCES[language], backend)
        assert built.ok, (language, backend, built.compile)
        _BUILDS[key] = built
    return _BUILDS[key]


def _run(language: str, backend: str, token: str, stdin: str, short_wall: bool = False):
    built = _built(language, backend)
    program = Program(command=(*built.language.run_command, token), files=dict(built.artefacts), stdin=stdin.encode())
    return run(program, _hostile_limits(language, short_wall), backend)


def _alive_after(backend: str) -> None:
    follow_up = run(Program(("python3", "-c", "print('alive')")), backend=backend)
    assert follow_up.status is Status.OK and follow_up.stdout == b"alive\n", (backend, follow_up)


LANGUAGES = sorted(SOURCES)


@pytest.mark.slow
@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
@pytest.mark.parametrize("language", LANGUAGES)
def test_runaway_programs_end_with_the_right_status_and_leave_nothing(language, behaviour, token, nothing_left):
    for backend in _available_backends():
        result = _run(language, backend, token, behaviour, short_wall=Status.TIMEOUT in BEHAVIOURS[behaviour])
        assert result.status in BEHAVIOURS[behaviour], (backend, result.status, result.detail, result.stderr[-300:])
        if behaviour == "flood":
            assert len(result.stdout) + len(result.stderr) <= 32 * 1024
        nothing_left(token)
        _alive_after(backend)


@pytest.mark.parametrize("language", LANGUAGES)
def test_network_is_unreachable(language, token):
    backends = [name for name in _available_backends() if name != "process"]  # the process backend shares it
    if not backends:
        pytest.skip("only the process backend is here, and it shares the host's network by design")
    for backend in backends:
        result = _run(language, backend, token, "network")
        assert result.status is Status.NONZERO_EXIT and result.exit_code == 7, (backend, result)
        assert b"CONNECTED" not in result.stdout


@pytest.mark.parametrize("language", LANGUAGES)
def test_daemons_die_with_the_run(language, token, nothing_left):
    for backend in _available_backends():
        result = _run(language, backend, token, "daemon")
        assert result.status is Status.OK, (backend, result)
        nothing_left(token)


@pytest.mark.parametrize("language", LANGUAGES)
def test_writes_outside_the_work_dir_do_not_reach_the_host(language, token):
    for backend in _available_backends():
        targets = ["/etc/" + token, "/usr/" + token, "/root/" + token, "/" + token, "/etc/alternatives/" + token]
        if backend != "process":  # the process backend shares the host's world-writable /tmp
            targets.append("/tmp/" + token)
        result = _run(language, backend, token, "write " + " ".join(targets))
        assert result.status is Status.OK, (backend, result)
        for path in targets:
            assert not os.path.exists(path), f"{language} on {backend} wrote {path} on the host"


@pytest.mark.skipif(os.geteuid() != 0, reason="host secrets are only protected from a private uid when we are root")
@pytest.mark.parametrize("language", LANGUAGES)
def test_host_files_are_unreadable(language, token, tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2-file-secret")
    secret.chmod(0o600)
    for backend in _available_backends():
        result = _run(language, backend, token, f"read {secret} /etc/shadow /root/.bashrc")
        assert result.status is Status.OK, (backend, result)
        assert b"hunter2-file-secret" not in result.stdout and b"root:" not in result.stdout, backend


# Sources whose compilation never ends or blows up; each must fail to build within its limits, output capped.
COMPILE_BOMBS = {
    # Nested constexpr loops stay under gcc's per-loop limit but need ~10^10 operations: the CPU limit ends it.
    "cpp": "constexpr long f() { long s = 0; for (long i = 0; i < 200000; i++) for (long j = 0; j < 200000; j++)"
    " s += i ^ j; return s; }\nstatic_assert(f() != 1);\nint main() {}\n",
    # Every expansion doubles the tokens: memory or time runs out long before the recursion limit.
    "rust": "macro_rules! grow { ($($t:tt)*) => { grow!($($t)* $($t)*); } }\ngrow!(x);\nfn main() {}\n",
}


def _bomb_limits(language: str):
    row = get_language(language)
    return dataclasses.replace(row.compile_limits, cpu_seconds=5, wall_seconds=20, output_bytes=16 * 1024)


@pytest.mark.slow
@pytest.mark.parametrize("language", sorted(COMPILE_BOMBS))
def test_compile_time_explosions_are_contained(language, backend):
    built = build(language, COMPILE_BOMBS[language], backend, _bomb_limits(language))
    assert not built.ok and built.artefacts == {}
    assert built.compile.status in ANY_FAILURE, built.compile
    assert len(built.compile.stdout) + len(built.compile.stderr) <= 16 * 1024
    _alive_after(backend)


ERROR_FLOOD = {
    "cpp": "int main( { return 0 }\n" * 5000,
    "go": "package main\n" + "func main( { return 0 }\n" * 5000,
    "rust": "fn main( { 0 }\n" * 5000,
    "java": "public class Main {\n" + "  void f( { return 0 }\n" * 5000 + "}\n",
}


@pytest.mark.parametrize("language", sorted(ERROR_FLOOD))
def test_compiler_error_floods_are_capped(language, backend):
    limits = dataclasses.replace(get_language(language).compile_limits, output_bytes=8 * 1024)
    built = build(language, ERROR_FLOOD[language], backend, limits)
    assert not built.ok and built.compile.status in ANY_FAILURE
    assert len(built.compile.stdout) + len(built.compile.stderr) <= 8 * 1024
