"""The options before the command: --version, and typer's shell completion, of the installed script."""

from __future__ import annotations

from importlib.metadata import version

from .conftest import installed_ragtune, user_shell


def test_version_prints_the_installed_packages_version() -> None:
    result = installed_ragtune("--version", env=user_shell())

    assert (result.code, result.stdout, result.stderr) == (0, f"ragtune {version('ragtune')}\n", "")


def test_shell_completion_is_offered_and_completes_commands_and_statuses() -> None:
    # typer asks shellingham which shell runs it unless told not to; a test names the shell itself
    no_detection = user_shell(_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")

    helped = installed_ragtune("--help", env=user_shell())
    script = installed_ragtune("--show-completion", "bash", env=no_detection)
    command = installed_ragtune(
        env=user_shell(_RAGTUNE_COMPLETE="complete_bash", COMP_WORDS="ragtune del", COMP_CWORD="1")
    )
    status = installed_ragtune(
        env=user_shell(_RAGTUNE_COMPLETE="complete_bash", COMP_WORDS="ragtune runs --status fa", COMP_CWORD="3")
    )

    assert "--install-completion" in helped.stdout and "--show-completion" in helped.stdout
    assert script.code == 0
    assert script.stdout.splitlines()[-1] == "complete -o default -F _ragtune_completion ragtune"
    assert (command.code, command.stdout) == (0, "delete-model\n")
    assert (status.code, status.stdout) == (0, "failed\n")
