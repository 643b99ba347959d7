"""What the on-call UI shows, read from the artifact store and Airflow's run list (no Airflow
import): the Incidents view's data (``incidents`` and the readers it assembles), its pages as FastAPI
routers (``web``) and their templates (``templates/``)."""
