"""The strategy server (``branchwise serve``): recipes as models behind an OpenAI API.

Needs the ``server`` extra (FastAPI, uvicorn); nothing here is imported unless a server is
started, so ``branchwise run`` works without it. Modules, from the edge inwards:

- ``main``: the command (load recipes, bind, start engines, run uvicorn);
- ``app``: the FastAPI app and the request flow (auth, size, fields, model, slot, search);
- ``protocol``: which request fields are honoured and their limits; ``settings``: the limits;
- ``catalog``: the served recipes and the recipe one request runs;
- ``search``: one search as a cancellable task, with its best answer so far;
- ``responses``: OpenAI-shaped bodies and chunks; ``streaming``: server-sent events that
  stop the search when the client goes away; ``errors``: the error shape.

See README, "The strategy server".
"""
