"""ASE-MLLM daemon: ZeroMQ server, model worker, store, watcher, XMP writer, client."""
