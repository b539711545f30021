"""``python -m host.serve --model smollm2-135m [--backend golden] [--port 8000]``."""

import sys

from hdl.spec.config import PRESETS

from ..accel.backend import BACKENDS
from ..cli import ArgumentParser, entry, int_in
from ..llm.quant import DEFAULT_SCHEME, SCHEMES


@entry
def main(argv=None) -> int:
    """Load the model, then serve it until Ctrl-C."""
    from ..llm.generate import load
    from ..llm.model import load_model
    from . import serve

    parser = ArgumentParser(prog="python -m host.serve",
                            description="OpenAI-compatible server (/v1/models, /v1/completions, "
                                        "/v1/chat/completions, SSE streaming) on a Systole backend.")
    parser.add_argument("--model", help="GGUF file or catalog name (default: Gemma 3 270M)")
    parser.add_argument("--name", help="the model id clients ask for (default: the catalog name "
                        "or the file's stem)")
    parser.add_argument("--backend", default="golden", choices=sorted(BACKENDS))
    parser.add_argument("--quant", choices=list(SCHEMES),
                        help=f"int8 scheme (default: {DEFAULT_SCHEME}, or a catalog model's own)")
    parser.add_argument("--preset", default="kv260", choices=sorted(PRESETS))
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: local only)")
    parser.add_argument("--port", type=int_in(0, 65535), default=8000)
    parser.add_argument("--max-tokens", type=int_in(1), default=256,
                        help="tokens of a request that sets no max_tokens")
    parser.add_argument("--max-waiting", type=int_in(1), default=64,
                        help="requests that may wait for the generator before 429")
    args = parser.parse_args(argv)
    model = load_model(args.model)
    name = args.name or (args.model if args.model and "/" not in args.model and not
                         args.model.endswith(".gguf") else model.source.stem)
    runtime = load(model, backend=args.backend, quant=args.quant, preset=args.preset)
    print(f"== {runtime.describe()}", file=sys.stderr)
    print(f"== serving {name!r} at http://{args.host}:{args.port}/v1 (Ctrl-C stops)", file=sys.stderr)
    with runtime:
        serve(runtime, name, args.host, args.port, default_max_tokens=args.max_tokens,
              max_waiting=args.max_waiting)
    return 0


if __name__ == "__main__":
    sys.exit(main())
