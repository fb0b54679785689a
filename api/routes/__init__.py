"""The API's path operations, one module per URL prefix: each route reads its request and
calls one function of the plumbing or the shared package."""
