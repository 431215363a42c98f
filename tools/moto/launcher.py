"""Start moto's server the way this project needs it.

AWS IoT certificate ids are the SHA-256 of the certificate's DER. moto only computes them that way when its IoT
config has use_valid_cert set, and that can only be set from Python before the server starts, hence this launcher.
Usage: launcher.py PORT  (binds 127.0.0.1 only)
"""
import sys

from moto.core.config import default_user_config

default_user_config["iot"]["use_valid_cert"] = True

from moto.server import main  # noqa: E402  (must come after the config change)

if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.exit("usage: launcher.py PORT")
    main(["-H", "127.0.0.1", "-p", sys.argv[1]])
