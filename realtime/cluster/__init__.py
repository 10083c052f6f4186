"""The server past one machine: Ray Serve replicas of the same app (`realtime cluster
serve`, realtime/cli/cluster.py). replica.py is the deployment; proxy.py is what runs in
Ray Serve's HTTP proxy. Both need the `cluster` extra (`pip install 'realtime[cluster]'`)."""
