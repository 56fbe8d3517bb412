"""Pages, API and wizard step of the appliance's own backup."""
