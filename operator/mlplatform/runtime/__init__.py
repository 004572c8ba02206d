"""The machine: list+watch into a cache, a work queue, the loop that turns keys into reconciles, leader
election, health, and the one module that talks to the API server. Nothing here knows a kind's spec."""
