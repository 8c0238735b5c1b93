"""Where the kernel runs, and what can give the receiver a public URL there.

Detection reads documented environment variables only (so tests fake them):

- GitHub Codespaces: ``CODESPACES=true``, ``CODESPACE_NAME``,
  ``GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN`` — a forwarded port is
  ``https://$CODESPACE_NAME-PORT.$GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN``, private until
  ``gh codespace ports visibility PORT:public`` (no tunnel needed).
  https://docs.github.com/en/codespaces/developing-in-a-codespace/default-environment-variables-for-your-codespace
- Kaggle: ``KAGGLE_KERNEL_RUN_TYPE`` (set in every Kaggle notebook); Kaggle no longer allows
  ngrok tunnels, so results come by polling.
- Google Colab: ``COLAB_RELEASE_TAG``; its terms restrict proxies and remote services (a
  tunnel may be cut); ``google.colab.kernel.proxyPort`` URLs work only in the user's browser.
- Binder: ``BINDER_LAUNCH_HOST`` / ``BINDER_REPO_URL`` (egress is HTTP(S) only: cloudflared's
  port 7844 is closed); JupyterHub: ``JUPYTERHUB_API_URL`` (its proxy needs a login).
- VS Code: ``VSCODE_PID`` / ``VSCODE_CWD`` / ``TERM_PROGRAM=vscode``.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

PLACES = ("codespaces", "kaggle", "colab", "binder", "jupyterhub", "vscode", "local")
# A short, bounded check of the outbound ports the agents need (never in tests: see doctor()).
PROBES: dict[str, tuple[str, int]] = {
    "ngrok (443)": ("connect.ngrok-agent.com", 443),
    "cloudflared (7844)": ("region1.v2.argotunnel.com", 7844),
}


@dataclass(frozen=True)
class Place:
    """Where the kernel runs: ``name`` (one of :data:`PLACES`), a label, and the evidence."""

    name: str
    label: str
    evidence: str
    forwarded_domain: str | None = None  # Codespaces: the forwarded ports' domain
    codespace: str | None = None

    def forwarded_url(self, port: int) -> str | None:
        """Codespaces' URL of a forwarded ``port`` (None elsewhere)."""
        if self.name != "codespaces" or not self.codespace or not self.forwarded_domain:
            return None
        return f"https://{self.codespace}-{port}.{self.forwarded_domain}"

    def publish_command(self, port: int) -> str | None:
        """The one command that makes a forwarded port public (Codespaces only)."""
        if self.name != "codespaces" or not self.codespace:
            return None
        return f"gh codespace ports visibility {port}:public -c {self.codespace}"


def detect(environ: Mapping[str, str] | None = None) -> Place:
    """Where this kernel runs, from documented environment variables."""
    env = os.environ if environ is None else environ
    if env.get("CODESPACES") == "true" and env.get("CODESPACE_NAME"):
        return Place(
            "codespaces",
            "GitHub Codespaces",
            "CODESPACES=true",
            forwarded_domain=env.get("GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN")
            or "app.github.dev",
            codespace=env["CODESPACE_NAME"],
        )
    if env.get("KAGGLE_KERNEL_RUN_TYPE"):
        return Place("kaggle", "Kaggle", "KAGGLE_KERNEL_RUN_TYPE is set")
    if env.get("COLAB_RELEASE_TAG"):
        return Place("colab", "Google Colab", "COLAB_RELEASE_TAG is set")
    if env.get("BINDER_LAUNCH_HOST") or env.get("BINDER_REPO_URL"):
        return Place("binder", "Binder", "BINDER_LAUNCH_HOST / BINDER_REPO_URL is set")
    if env.get("JUPYTERHUB_API_URL"):
        return Place("jupyterhub", "JupyterHub", "JUPYTERHUB_API_URL is set")
    if env.get("VSCODE_PID") or env.get("VSCODE_CWD") or env.get("TERM_PROGRAM") == "vscode":
        return Place("vscode", "VS Code", "VSCODE_PID / VSCODE_CWD is set")
    return Place("local", "this machine", "no hosted-notebook variable is set")


def probe(targets: Mapping[str, tuple[str, int]], timeout: float = 2.0) -> dict[str, bool]:
    """For each ``name -> (host, port)``: can a TCP connection be opened within ``timeout``?"""
    out = {}
    for name, (host, port) in targets.items():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                out[name] = True
        except OSError:
            out[name] = False
    return out


@dataclass
class Report:
    """What :func:`suno_nb.doctor` found, and what ``start_receiver()`` will do."""

    place: Place
    ngrok_token: bool
    cloudflared: str | None
    reach: dict[str, bool | None] = field(default_factory=dict)
    plan: str = ""
    advice: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        reach = ", ".join(
            f"{k}: {'open' if v else 'blocked' if v is False else 'not checked'}"
            for k, v in self.reach.items()
        )
        return [
            f"runs on: {self.place.label} ({self.place.evidence})",
            f"ngrok authtoken: {'found' if self.ngrok_token else 'none'}; "
            f"cloudflared: {self.cloudflared or 'not installed'}",
            f"outbound: {reach or 'not checked'}",
            f"start_receiver() will: {self.plan}",
            *(f"- {a}" for a in self.advice),
        ]

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def __repr__(self) -> str:
        return f"<doctor: {self.place.name}; {self.plan}>"

    def _repr_html_(self) -> str:
        import html

        return "<pre>" + html.escape(str(self)) + "</pre>"


def plan_for(place: Place, ngrok_token: bool) -> tuple[str, list[str]]:
    """What ``start_receiver(tunnel="auto")`` does here, and advice in plain words."""
    if place.name == "kaggle":
        return (
            "stay local and rely on polling (Kaggle does not allow tunnels)",
            ["results come by polling record-info; callbacks cannot reach this kernel"],
        )
    if place.name == "codespaces":
        return (
            "use the codespace's forwarded port as the public URL (no tunnel)",
            [
                "make the port public once the receiver runs: "
                "gh codespace ports visibility PORT:public (rx's note names the port)"
            ],
        )
    advice = []
    if place.name == "colab":
        advice.append("Colab's terms restrict proxies and remote services: a tunnel may be cut")
    if place.name == "binder":
        advice.append("Binder allows only HTTP(S) out: cloudflared (port 7844) cannot connect")
    if place.name == "jupyterhub":
        advice.append("the hub's own proxy needs a login: the service cannot call back through it")
    if ngrok_token:
        return "open an ngrok tunnel (an authtoken was found)", advice
    advice.append(
        "for callbacks, start_receiver(tunnel='cloudflared') (no account) or set NGROK_AUTHTOKEN"
    )
    return "stay local (the sandbox works as is; the hosted API needs a tunnel)", advice


def doctor(
    *,
    probe_ports: bool | Mapping[str, tuple[str, int]] = True,
    timeout: float = 2.0,
    environ: Mapping[str, str] | None = None,
) -> Report:
    """Report where this kernel runs and what can give the receiver a public URL.

    ``probe_ports``: try a TCP connection (``timeout`` seconds each) to the agents' servers
    (:data:`PROBES`), or to the ``name -> (host, port)`` given; False checks nothing.
    ``environ``: the variables to read (default ``os.environ``).
    """
    from .cloudflared import find_program
    from .settings import resolve_authtoken

    place = detect(environ)
    env = os.environ if environ is None else environ
    token = bool((env.get("NGROK_AUTHTOKEN") or "").strip()) or resolve_authtoken() is not None
    try:
        cloudflared: str | None = find_program(None)
    except Exception:  # CloudflaredUnavailable: reported as "not installed"
        cloudflared = shutil.which("cloudflared")
    if probe_ports is False:
        reach: dict[str, bool | None] = dict.fromkeys(PROBES)
    else:
        targets = PROBES if probe_ports is True else dict(probe_ports)
        reach = dict(probe(targets, timeout))
    plan, advice = plan_for(place, token)
    if reach and all(v is False for v in reach.values()):
        advice.append("no tunnel agent can connect out from here: rely on polling")
    return Report(place, token, cloudflared, reach, plan, advice)


@dataclass
class ForwardedPort:
    """A port the hosting environment forwards itself (Codespaces): a public URL with no
    agent, so nothing to start or end.  Duck-types the tunnels' ``public_url``/``closed``."""

    public_url: str
    port: int
    kind: str = "codespaces"
    closed: bool = False

    def close(self) -> None:
        self.closed = True
