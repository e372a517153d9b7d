"""`llm-foundry-serve`: run the server and manage its keys and model versions.

    llm-foundry-serve [--lake lake] serve [--port 8000] [--config serve.json]
    llm-foundry-serve add-key NAME [--role admin] [--rpm N] [--tpm N]
    llm-foundry-serve revoke-key NAME
    llm-foundry-serve versions
    llm-foundry-serve register CHECKPOINT_DIR [--activate]
    llm-foundry-serve rollback [--version v0001]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from pipelines.contract import config_from_dict
from pipelines.lake import Lake
from pipelines.settings import setting_path
from serving.config import ServeConfig
from serving.keys import KeyStore
from serving.registry import Registry, RegistryError


def load_config(path: str | None, **overrides) -> ServeConfig:
    raw = json.loads(Path(path).read_text()) if path else {}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return config_from_dict(ServeConfig, raw)


def keystore(lake: Lake, cfg: ServeConfig) -> KeyStore:
    return KeyStore(Path(cfg.keys_file) if cfg.keys_file else lake.api_keys_path())


def serve(lake: Lake, cfg: ServeConfig, bootstrap_key: bool = True) -> None:
    import uvicorn

    from serving.app import create_app

    registry = Registry(lake)
    if not registry.pointer():
        if not lake.promoted_dir().exists():
            raise RegistryError(f"nothing to serve in {lake.root}: no active version and no promoted model; run `make demo` "
                                "(or materialize `promoted_model`), or `llm-foundry-serve register CHECKPOINT --activate`")
        v = registry.register(lake.promoted_dir(), source="promoted_model")  # first start after `make demo`
        registry.activate(v.name, reason="first serve")
        print(f"registered the promoted model as {v.name}")
    keys = keystore(lake, cfg)
    if bootstrap_key and not keys.keys():  # interactive first start; a background server never prints a key
        token = keys.add("local")
        print(f"created API key 'local' (stored hashed in {keys.path}; shown only now):\n  {token}", flush=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(f"serving {cfg.model_name} on http://{cfg.host}:{cfg.port}  config: {json.dumps(dataclasses.asdict(cfg))}", flush=True)
    uvicorn.run(create_app(cfg, lake), host=cfg.host, port=cfg.port, timeout_graceful_shutdown=cfg.shutdown_grace_s,
                log_level="warning", access_log=False)  # the request log (serving/requestlog.py) is the access log


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="llm-foundry-serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lake", default=None, help="lake root (default: $LAKE_DIR or ./lake)")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the OpenAI-compatible server in the foreground")
    s.add_argument("--config", help="JSON file with ServeConfig fields (serving/config.py)")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--no-bootstrap-key", action="store_true", help="do not create and print a key when the keys file is empty")
    k = sub.add_parser("add-key", help="create an API key and print it once")
    k.add_argument("name")
    k.add_argument("--role", default="user", choices=["user", "admin"])
    k.add_argument("--rpm", type=int, help="this key's requests per minute (default: the server's)")
    k.add_argument("--tpm", type=int, help="this key's tokens per minute (default: the server's)")
    r = sub.add_parser("revoke-key", help="delete an API key")
    r.add_argument("name")
    sub.add_parser("versions", help="list registered model versions")
    g = sub.add_parser("register", help="add a checkpoint directory as a new version")
    g.add_argument("checkpoint")
    g.add_argument("--activate", action="store_true")
    b = sub.add_parser("rollback", help="serve the previous (or a named) version again")
    b.add_argument("--version")
    args = p.parse_args(argv)
    lake = Lake(Path(args.lake or setting_path("LAKE_DIR")))
    try:
        if args.command == "serve":
            serve(lake, load_config(args.config, host=args.host, port=args.port), bootstrap_key=not args.no_bootstrap_key)
        elif args.command == "add-key":
            print(keystore(lake, load_config(None)).add(args.name, args.role, args.rpm, args.tpm))
        elif args.command == "revoke-key":
            print("revoked" if keystore(lake, load_config(None)).revoke(args.name) else f"no key named {args.name!r}")
        elif args.command == "versions":
            reg = Registry(lake)
            cur = reg.pointer().get("version")
            for v in reg.versions():
                print(f"{'*' if v.name == cur else ' '} {v.name}  {v.checkpoint_hash[:12]}  {v.source}")
        elif args.command == "register":
            reg = Registry(lake)
            v = reg.register(Path(args.checkpoint))
            print(v.name)
            if args.activate:
                reg.activate(v.name)
        elif args.command == "rollback":
            print(json.dumps(Registry(lake).rollback(args.version)))
    except (RegistryError, ValueError) as exc:
        sys.exit(f"llm-foundry-serve: {exc}")
