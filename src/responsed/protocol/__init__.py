"""Wire types of the Responses API: requests, items, the Response object, events, ids."""
