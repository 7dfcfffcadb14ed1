"""``genzoo serve`` (the ``serve`` extra): ``app`` the ASGI routes and the gallery
(``static/``), ``queue`` the bounded queue and batching worker, ``pool`` the loaded models,
``formats`` request parsing and response encodings, ``openapi`` the schema."""
