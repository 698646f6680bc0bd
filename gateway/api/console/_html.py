"""The page frame shared by every console page. Every value put into a page goes through `e`."""

from __future__ import annotations

from html import escape

STATIC = "/console/static"


def e(value: object) -> str:
    return escape(str(value), quote=True)


def page(title: str, main: str, *, csrf: str | None = None) -> str:
    """A whole page. With `csrf` (signed in), the header has the navigation and a sign-out form."""
    header = '\n<header class="top"><span class="brand">event-gateway</span></header>'
    if csrf is not None:
        header = f"""
<header class="top">
  <a class="brand" href="/console/instances">event-gateway</a>
  <nav aria-label="Main"><a href="/console/overview">Overview</a> <a href="/console/instances">Instances</a> <a href="/console/instances/new">New instance</a></nav>
  <form method="post" action="/console/sign-out" class="sign-out">{csrf_input(csrf)}<button type="submit" class="link">Sign out</button></form>
</header>"""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · event-gateway</title>
<link rel="stylesheet" href="{STATIC}/console.css">
<script src="{STATIC}/console.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>{header}
<main id="main">
{main}
</main>
</body>
</html>
"""


def csrf_input(token: str) -> str:
    return f'<input type="hidden" name="csrf" value="{e(token)}">'
