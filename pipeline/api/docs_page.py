"""``GET /docs``: the API as an interactive page, rendered from the OpenAPI document this server serves.

One self-contained HTML page, built on the server from the document served at
``/openapi.json``: every operation with its summary, description, key
requirement and parameters (name, where, required, type, description), and a
form per operation that sends the request from the browser, with the API key
typed into the page (sent only as the ``Authorization`` header, to this
server, never stored). The answer is shown as text (status, the headers that
matter, the JSON body indented): the page never renders what the API answers
as HTML.

Nothing is fetched from anywhere else: no asset, font or script of another
host, no build step. The page's own script and style are inline and pinned by
hash in its ``Content-Security-Policy`` (``connect-src 'self'``), and every
text from the document is escaped. The page works without its script too (it
lists everything; only sending needs it).
"""

from __future__ import annotations

import base64
import hashlib
import html
from typing import Any

import orjson

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:72rem;padding:1rem 1.5rem;color:#1d232a}
header{border-bottom:1px solid #ccd;margin-bottom:1rem}
code,pre,textarea,input,select{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px}
nav ul{columns:2;padding-left:1.2rem} nav li{margin:.1rem 0}
section.op{border:1px solid #ccd;border-radius:6px;margin:1rem 0;padding:.2rem 1rem .8rem}
h2{font-size:1.05rem} .method{display:inline-block;min-width:4.2rem;font-weight:700}
.GET{color:#0b6e4f}.POST{color:#8a4b00}.DELETE{color:#a4161a}
.lock{font-size:.8rem;border:1px solid #999;border-radius:4px;padding:0 .3rem;margin-left:.5rem;color:#555}
table{border-collapse:collapse;width:100%} th,td{text-align:left;vertical-align:top;padding:.25rem .4rem;border-top:1px solid #eee}
input,select{width:100%;box-sizing:border-box} textarea{width:100%;min-height:5rem;box-sizing:border-box}
pre.answer{background:#f4f5f7;padding:.6rem;white-space:pre-wrap;word-break:break-all;max-height:28rem;overflow:auto}
pre.answer:empty{display:none} .muted{color:#666} #key{max-width:40rem}
"""

_SCRIPT = """
"use strict";
const SHOWN_HEADERS = ["content-type", "retry-after", "x-cache", "www-authenticate", "allow"];
document.addEventListener("submit", async (event) => {
  const form = event.target.closest("form[data-path]");
  if (!form) return;
  event.preventDefault();
  const out = form.parentElement.querySelector("pre.answer");
  let path = form.dataset.path;
  const query = new URLSearchParams();
  let body;
  for (const field of form.querySelectorAll("[data-in]")) {
    const value = field.value;
    if (field.dataset.in === "body") { body = value; continue; }
    if (value === "") continue;
    if (field.dataset.in === "path") path = path.replace("{" + field.dataset.name + "}", encodeURIComponent(value));
    else query.append(field.dataset.name, value);
  }
  const headers = {};
  const key = document.getElementById("key").value.trim();
  if (key && form.dataset.secured === "1") headers["Authorization"] = "Bearer " + key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const url = path + (query.toString() ? "?" + query.toString() : "");
  out.textContent = form.dataset.method + " " + url + "\\n...";
  try {
    const response = await fetch(url, {method: form.dataset.method, headers: headers, body: body,
                                       credentials: "omit", cache: "no-store", redirect: "error"});
    const text = await response.text();
    let shown = text;
    if ((response.headers.get("content-type") || "").includes("json")) {
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { shown = text; }
    }
    const lines = [form.dataset.method + " " + url, response.status + " " + response.statusText];
    for (const name of SHOWN_HEADERS) {
      const value = response.headers.get(name);
      if (value !== null) lines.push(name + ": " + value);
    }
    out.textContent = lines.join("\\n") + "\\n\\n" + shown;
  } catch (error) {
    out.textContent = form.dataset.method + " " + url + "\\nrequest failed: " + error;
  }
});
"""


def _hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


#: The page's Content-Security-Policy: its own inline script and style only, requests to this server only.
CONTENT_SECURITY_POLICY = (f"default-src 'none'; script-src {_hash(_SCRIPT)}; style-src {_hash(_STYLE)}; "
                           "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _example(schema: dict[str, Any]) -> Any:
    """A value of ``schema`` to start from (a request body the person then edits)."""
    if "default" in schema:
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {name: _example(schema.get("properties", {}).get(name, {})) for name in schema.get("required", [])}
    if kind == "array":
        return [_example(schema.get("items", {})) for _ in range(schema.get("minItems", 0))]
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    return ""


def _type(schema: dict[str, Any]) -> str:
    kind = schema.get("type", "")
    if "enum" in schema:
        return " | ".join(str(value) for value in schema["enum"])
    bounds = [f"{label} {schema[name]}" for name, label in (("minimum", "≥"), ("maximum", "≤")) if name in schema]
    return " ".join([str(kind), *bounds])


def _input(param: dict[str, Any]) -> str:
    schema = param.get("schema", {})
    attributes = (f'data-in="{_e(param["in"])}" data-name="{_e(param["name"])}" aria-label="{_e(param["name"])}"'
                  + (" required" if param.get("required") else ""))
    choices = schema.get("enum") or (["true", "false"] if schema.get("type") == "boolean" else None)
    if choices:
        options = ([] if param.get("required") else ['<option value=""></option>']) + \
                  [f'<option value="{_e(choice)}">{_e(choice)}</option>' for choice in choices]
        return f"<select {attributes}>{''.join(options)}</select>"
    placeholder = schema.get("default", schema.get("type", ""))
    return f'<input type="text" {attributes} placeholder="{_e(placeholder)}" autocomplete="off">'


def _operation(method: str, path: str, operation: dict[str, Any]) -> str:
    secured = bool(operation.get("security"))
    parts = [f'<section class="op" id="{_e(operation.get("operationId", ""))}" data-method="{_e(method)}" '
             f'data-path="{_e(path)}">',
             f'<h2><span class="method {_e(method)}">{_e(method)}</span> <code>{_e(path)}</code>'
             + (f'<span class="lock">key, scope {_e(operation.get("x-scope", "read"))}</span>' if secured
                else '<span class="lock">no key</span>') + "</h2>",
             f"<p>{_e(operation.get('summary', ''))}</p>"]
    if operation.get("description"):
        parts.append(f'<p class="muted">{_e(operation["description"])}</p>')
    parts.append(f'<form data-method="{_e(method)}" data-path="{_e(path)}" data-secured="{1 if secured else 0}">')
    params = operation.get("parameters", [])
    if params:
        rows = "".join(
            f"<tr><td><code>{_e(p['name'])}</code></td><td>{_e(p['in'])}</td><td>{'yes' if p.get('required') else ''}</td>"
            f"<td>{_e(_type(p.get('schema', {})))}<br><span class=\"muted\">{_e(p.get('description', ''))}</span></td>"
            f"<td>{_input(p)}</td></tr>" for p in params)
        parts.append("<table><thead><tr><th>parameter</th><th>in</th><th>required</th><th>type</th><th>value</th>"
                     f"</tr></thead><tbody>{rows}</tbody></table>")
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    if body is not None:
        example = orjson.dumps(_example(body)).decode()
        schema = orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()
        parts.append(f'<p>JSON body</p><textarea data-in="body" aria-label="body">{_e(example)}</textarea>'
                     f"<details><summary>body schema</summary><pre>{_e(schema)}</pre></details>")
    parts.append("<p><button type=\"submit\">Send</button></p></form>")
    responses = "; ".join(f"{_e(status)} {_e(answer.get('description', ''))}"
                          for status, answer in operation.get("responses", {}).items())
    parts.append(f'<p class="muted">Answers: {responses}</p><pre class="answer" aria-live="polite"></pre></section>')
    return "".join(parts)


def render(document: dict[str, Any]) -> bytes:
    """The page of the OpenAPI ``document`` (as served at ``/openapi.json``)."""
    info = document.get("info", {})
    operations = [(method.upper(), path, operation) for path, methods in document.get("paths", {}).items()
                  for method, operation in methods.items()]
    index = "".join(f'<li><a href="#{_e(op.get("operationId", ""))}"><code>{_e(method)} {_e(path)}</code></a> '
                    f'<span class="muted">{_e(op.get("summary", ""))}</span></li>' for method, path, op in operations)
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(info.get('title', 'API'))}</title><style>{_STYLE}</style></head><body><header>"
        f"<h1>{_e(info.get('title', 'API'))} <small class=\"muted\">{_e(info.get('version', ''))}</small></h1>"
        f"<p>{_e(info.get('description', ''))}</p>"
        '<p>The OpenAPI document: <a href="/openapi.json"><code>/openapi.json</code></a>.</p>'
        '<p><label>API key <input id="key" type="password" autocomplete="off" spellcheck="false" '
        'placeholder="tw_&lt;key id&gt;_&lt;secret&gt;"></label></p>'
        '<p class="muted">The key stays in this page: it is sent only in the Authorization header of the requests '
        "you send from it, to this server, and is kept nowhere.</p></header>"
        f"<nav><ul>{index}</ul></nav><main>"
        + "".join(_operation(method, path, op) for method, path, op in operations)
        + f"</main><script>{_SCRIPT}</script></body></html>"
    )
    return page.encode()
