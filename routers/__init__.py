"""The service's HTTP routes, one router per concern; `classifier.app` mounts them."""
