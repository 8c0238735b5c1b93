# The seeds' Flask receiver ("Python (Flask)" in shared/seeds/000_494978406ef5a393.txt),
# VERBATIM, as the comparison point for benchmarks/bench_ack.py.  Changed, and only these:
#   - logging level INFO -> WARNING (basicConfig below, and werkzeug's per-request access
#     log), so its log lines do not flood the benchmark output.  This makes Flask FASTER
#     than the seed as written (no log formatting or writes), so the comparison is
#     conservative in Flask's favour;
#   - the ``__main__`` block binds 127.0.0.1 on a port given on the command line and runs
#     Flask's threaded dev server: ``app.run(host="127.0.0.1", port=..., threaded=True)``.
#     benchmarks/server.py calls ``serve(port)``, the same call, from a background thread.
# ruff: noqa
# fmt: off
from flask import Flask, request, jsonify
import logging

app = Flask(__name__)
logging.basicConfig(level=logging.WARNING)  # seed: level=logging.INFO
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # added: no access-log flood

@app.route('/replace-section-callback', methods=['POST'])
def replace_section_callback():
    data = request.json
    code = data.get('code')
    msg = data.get('msg')
    callback_data = data.get('data', {})
    
    logging.info(f"Replace section callback received: code={code}, msg={msg}")
    
    if code == 200 and callback_data.get('callbackType') == 'complete':
        # Handle successful replacement
        logging.info("Replacement completed successfully")
        music_data = callback_data.get('data', [])
        for i, music in enumerate(music_data):
            logging.info(f"Music {i + 1}: {music.get('title')} - {music.get('duration')}s")
    else:
        # Handle failure
        logging.error(f"Replacement failed: {msg}")
    
    # Always respond with success
    return jsonify({"code": 200, "msg": "success"})

PATH = "/replace-section-callback"  # added: for the benchmark harness


def serve(port):  # added: the seed's app.run, with host/port changed and threaded=True
    app.run(host="127.0.0.1", port=port, threaded=True)


if __name__ == '__main__':
    import sys
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
