"""The table of languages: every row builds and runs a small program on every backend CI has, a bad name is one
clear error, and a build's artefacts are exactly what its row names."""

from __future__ import annotations

import pytest

from verifarm.sandbox import Status
from verifarm.sandbox.compile_run import compile_and_run
from verifarm.sandbox.languages import LANGUAGE_NAMES, LANGUAGES, get_language

# Reads two numbers and prints their sum and, on stderr, a word: stdin, stdout and stderr all cross the sandbox.
ADD = {
    "python": "import sys\na, b = map(int, sys.stdin.read().split())\nprint(a + b)\nprint('note', file=sys.stderr)\n",
    "c": '#include <stdio.h>\nint main(void){long long a,b;scanf("%lld %lld",&a,&b);printf("%lld\\n",a+b);'
    'fputs("note\\n",stderr);return 0;}\n',
    "cpp": '#include <iostream>\nint main(){long long a,b;std::cin>>a>>b;std::cout<<a+b<<"\\n";std::cerr<<"note\\n";}\n',
    "go": 'package main\nimport ("fmt"; "os")\nfunc main(){var a,b int64\nfmt.Scan(&a,&b)\nfmt.Println(a+b)\n'
    'fmt.Fprintln(os.Stderr, "note")}\n',
    "rust": "use std::io::Read;\nfn main(){let mut s=String::new();std::io::stdin().read_to_string(&mut s).unwrap();"
    'let v:i64=s.split_whitespace().map(|t|t.parse::<i64>().unwrap()).sum();println!("{}",v);'
    'eprintln!("note");}\n',
    "javascript": "const d=require('fs').readFileSync(0,'utf8').trim().split(/\\s+/).map(Number);"
    "console.log(d[0]+d[1]);console.error('note');\n",
    "java": "import java.util.*;\npublic class Main{public static void main(String[] a){Scanner s=new Scanner(System.in);"
    'System.out.println(s.nextLong()+s.nextLong());System.err.println("note");}}\n',
}


def test_the_table_has_the_seven_languages_once_each():
    assert set(LANGUAGE_NAMES) == set(ADD) and len(LANGUAGE_NAMES) == len(set(LANGUAGE_NAMES)) == 7
    assert {get_language(alias).name for alias in ("py", "c++", "golang", "rs", "js", "node")} == {
        "python",
        "cpp",
        "go",
        "rust",
        "javascript",
    }
    for language in LANGUAGES:
        assert (language.compile_command is None) == (language.compile_limits is None)


def test_an_unknown_language_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown language 'cobol'; choose one of python, c, cpp"):
        get_language("cobol")


@pytest.mark.parametrize("language", LANGUAGE_NAMES)
def test_every_language_builds_and_runs_on_every_backend(language: str, backend: str):
    result = compile_and_run(language, ADD[language], [b"40 2\n", b"-5 5\n"], backend)
    assert result.compiled, result.compile
    assert [run.status for run in result.runs] == [Status.OK, Status.OK], result.runs
    assert [run.stdout for run in result.runs] == [b"42\n", b"0\n"]
    assert all(b"note" in run.stderr for run in result.runs)
    row = get_language(language)
    assert set(result.build.artefacts) == set(row.artefacts if row.compiled else (row.source_file,))


def test_a_failed_build_keeps_no_artefact_and_runs_nothing(backend: str):
    result = compile_and_run("rust", "fn main() { let x: u8 = 300; }", [b""], backend)
    assert not result.compiled and result.runs == [] and result.build.artefacts == {}
    assert result.compile.status is Status.NONZERO_EXIT and b"error" in result.compile.stderr
