"""Workflows: what one command does, between the faces (api, cli, web) and the engines (estimate,
sim, search). A workflow resolves a scenario, calls the engines, and returns a report with the
assumptions the scenario's defaults imply and its datacenter keys. Nothing here renders, and nothing
here imports a face or a consumer (docs/architecture.md).

    models      counts of one model (`flopcast model show`, `flopcast models`)
    hardware    catalog accelerators and sites (`flopcast hardware`, `flopcast sites`)
    training    the estimate of a scenario's plan (`flopcast train`)
    phases      multi-phase runs: one estimate per phase, and their sums
    search      the plan search (`flopcast search`)
    serving     the serving estimate and the simulation (`flopcast infer`, `flopcast simulate`)
    datacenter  power, energy, cost and carbon of a report (its site and pricing)
    plan        every section of a scenario (`flopcast plan`)
    budget      what a power, energy or dollar budget buys (`flopcast budget`)
    sweep       one search per combination of varied values (`flopcast sweep`)
    sizing      the cheapest fleet meeting an SLO, by simulation (`flopcast simulate --size-fleet`)
"""
