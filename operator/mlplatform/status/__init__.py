"""Pure status decisions: observed children -> phase and conditions. No kopf, no kubernetes client."""
