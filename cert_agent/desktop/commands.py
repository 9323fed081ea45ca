"""The ``cert-agent autostart`` and ``cert-agent browser-policy`` commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from cert_agent.agent.config import load_config
from cert_agent.agent.exitcodes import EXIT_ERROR, EXIT_OK, EXIT_USAGE


def cmd_autostart(args: argparse.Namespace, out: TextIO) -> int:
    from cert_agent.desktop import autostart

    home = Path.home()
    if args.action == "enable":
        state = autostart.enable(home, autostart.agent_command())
    elif args.action == "disable":
        state = autostart.disable(home)
    else:
        state = autostart.status(home)
    print(
        f"开机自动启动 (autostart): {'已开启 enabled' if state.enabled else '未开启 disabled'} ({state.where})",
        file=out,
    )
    return EXIT_OK


def cmd_browser_policy(args: argparse.Namespace, out: TextIO) -> int:
    from cert_agent.desktop import browser_policy

    try:
        origins = args.allow_origin or list(load_config(args.config).allowed_origins)
        browser_policy.allowed_origins(origins)  # validates: exact origins only
    except ValueError as exc:
        print(f"配置错误 (configuration error): {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not origins and args.action != "remove":
        print("没有配置允许的网站 (no allowed origins configured)", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.action == "install":
            for path in browser_policy.install(origins, args.root):
                print(f"已写入 (written): {path}", file=out)
        elif args.action == "remove":
            for path in browser_policy.remove(args.root):
                print(f"已删除 (removed): {path}", file=out)
    except PermissionError as exc:
        print(f"需要管理员权限 (run as root): {exc}", file=sys.stderr)
        return EXIT_ERROR
    except browser_policy.PolicyFileError as exc:
        print(f"浏览器策略文件无法读取 (unreadable policy file): {exc}", file=sys.stderr)
        return EXIT_ERROR
    for browser, allowed in browser_policy.status(origins, args.root).items():
        print(f"{browser}: {'允许 allowed' if allowed else '未允许 not allowed'} {', '.join(origins)}", file=out)
    return EXIT_OK
